"""The API panel: let other apps use the loaded model."""
