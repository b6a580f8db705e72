; LayerLab for Windows: a per-user installer (no administrator rights).
;   makensis /DVERSION=0.1.0 /DDIST=..\..\dist\layerlab /DCUDA=..\..\dist\cuda ^
;            /DOUTFILE=..\..\dist\LayerLab-0.1.0-setup.exe installers\windows\layerlab.nsi
; DIST is the PyInstaller folder (LayerLab.exe, layerlab-cli.exe, _internal\); CUDA, when
; given, holds llama.cpp's CUDA backend module and the CUDA runtime DLLs it needs, offered as
; the optional "NVIDIA CUDA backend" component. Silent install: setup.exe /S [/D=dir].
Unicode true
!ifndef VERSION
  !define VERSION "0.1.0"
!endif
!ifndef DIST
  !error "give /DDIST=<the PyInstaller folder>"
!endif
!ifndef OUTFILE
  !define OUTFILE "LayerLab-${VERSION}-setup.exe"
!endif
!define APP "LayerLab"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\LayerLab"
; Where LayerLab keeps each person's settings, chats and models (platformdirs' folders).
!define DATA "$LOCALAPPDATA\layerlab"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "Software\${APP}" "InstallDir"
SetCompressor /SOLID lzma
!ifdef ICON
  Icon "${ICON}"
  UninstallIcon "${ICON}"
!endif

!include "MUI2.nsh"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\LayerLab.exe"
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "FileDescription" "${APP} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

Section "LayerLab (required)" SecApp
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; An update replaces the program, never the person's data (that lives in ${DATA}).
  RMDir /r "$INSTDIR\_internal"
  File /r "${DIST}\*"
  WriteUninstaller "$INSTDIR\Uninstall.exe"
  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\LayerLab.exe"
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\Uninstall.exe"
  WriteRegStr HKCU "Software\${APP}" "InstallDir" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "LayerLab"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\LayerLab.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
SectionEnd

!ifdef CUDA
; Off unless chosen: only NVIDIA cards use it, and the CUDA runtime is large. Vulkan already
; runs NVIDIA, AMD and Intel GPUs.
Section /o "NVIDIA CUDA backend" SecCuda
  SetOutPath "$INSTDIR\_internal\llama_cpp\lib"
  File /r "${CUDA}\*"
SectionEnd
!endif

; The uninstaller removes the program; the person's models, chats and settings stay unless
; they tick this (it is off by default, also for a silent uninstall).
Section "un.LayerLab" UnSecApp
  SectionIn RO
  Delete "$SMPROGRAMS\${APP}\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk"
  RMDir "$SMPROGRAMS\${APP}"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\LayerLab.exe"
  Delete "$INSTDIR\layerlab-cli.exe"
  Delete "$INSTDIR\layerlab-build.json"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
  DeleteRegKey HKCU "Software\${APP}"
SectionEnd

Section /o "un.Also delete my models, chats and settings" UnSecData
  RMDir /r "${DATA}"
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecApp} "LayerLab with llama.cpp for the processor and for any GPU through Vulkan, and a small demo model."
!ifdef CUDA
  !insertmacro MUI_DESCRIPTION_TEXT ${SecCuda} "llama.cpp's CUDA backend for NVIDIA GPUs, with the CUDA runtime it needs."
!endif
!insertmacro MUI_FUNCTION_DESCRIPTION_END
