@echo off
rem Start the Codex server and web UI from the project virtualenv (.venv at the repo root).
rem Every argument is passed to "sdcodex serve". SDCODEX_VENV overrides the virtualenv folder.
setlocal
set "ROOT=%~dp0.."
if defined SDCODEX_VENV (set "VENV=%SDCODEX_VENV%") else (set "VENV=%ROOT%\.venv")
if not exist "%VENV%\Scripts\python.exe" (
  echo start-ui: no virtualenv at %VENV%; install Codex first: ./scripts/install.sh 1>&2
  exit /b 2
)
if exist "%VENV%\Scripts\sdcodex.exe" (
  "%VENV%\Scripts\sdcodex.exe" serve %*
) else (
  set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
  "%VENV%\Scripts\python.exe" -m sdcodex.cli.main serve %*
)
exit /b %ERRORLEVEL%
