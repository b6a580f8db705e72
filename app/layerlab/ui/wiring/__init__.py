"""How the window's panels are wired to each other and to real data, one concern a module."""
