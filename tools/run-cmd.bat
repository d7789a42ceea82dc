@echo off
rem Run any command inside the project virtualenv (.venv at the repo root), e.g.:
rem   tools\run-cmd.bat sdcodex models list
rem SDCODEX_VENV overrides the virtualenv folder.
setlocal
set "ROOT=%~dp0.."
if defined SDCODEX_VENV (set "VENV=%SDCODEX_VENV%") else (set "VENV=%ROOT%\.venv")
if not exist "%VENV%\Scripts\activate.bat" (
  echo run-cmd: no virtualenv at %VENV%; install Codex first: ./scripts/install.sh 1>&2
  exit /b 2
)
if "%~1"=="" (
  echo usage: tools\run-cmd.bat COMMAND [ARGS...] 1>&2
  exit /b 2
)
call "%VENV%\Scripts\activate.bat"
%*
exit /b %ERRORLEVEL%
