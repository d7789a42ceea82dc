@echo off
rem Write a debug zip (environment, settings, logs, models, jobs; secrets redacted) for a bug report.
rem Every argument is passed to "sdcodex export-debug". SDCODEX_VENV overrides the virtualenv folder.
setlocal
set "ROOT=%~dp0.."
if defined SDCODEX_VENV (set "VENV=%SDCODEX_VENV%") else (set "VENV=%ROOT%\.venv")
if not exist "%VENV%\Scripts\python.exe" (
  echo export-debug: no virtualenv at %VENV%; install Codex first: ./scripts/install.sh 1>&2
  exit /b 2
)
if exist "%VENV%\Scripts\sdcodex.exe" (
  "%VENV%\Scripts\sdcodex.exe" export-debug %*
) else (
  set "PYTHONPATH=%ROOT%;%PYTHONPATH%"
  "%VENV%\Scripts\python.exe" -m sdcodex.cli.main export-debug %*
)
exit /b %ERRORLEVEL%
