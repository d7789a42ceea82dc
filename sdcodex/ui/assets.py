"""The page's CSS and the keyboard shortcuts: Ctrl+Enter presses the visible tab's Generate, Esc its
Interrupt (A1111's keys)."""

CSS = """
#codex-quicksettings { align-items: end; }
#codex-refresh { max-width: 48px; min-width: 48px; }
.codex-progress { min-height: 1.6em; font-size: 0.9em; }
.codex-progress[data-state="idle"] { display: none; }
.codex-progress-bar { height: 10px; border-radius: 5px; background: var(--neutral-200, #e5e7eb); overflow: hidden; }
.codex-progress-fill { height: 100%; background: var(--color-accent, #f97316); transition: width 0.15s linear; }
.codex-progress[data-state="done"] .codex-progress-fill { background: #16a34a; }
.codex-progress[data-state="failed"] .codex-progress-fill,
.codex-progress[data-state="interrupted"] .codex-progress-fill,
.codex-progress[data-state="cancelled"] .codex-progress-fill { background: #dc2626; }
.codex-progress-text { margin-top: 4px; }
.codex-preview { display: block; margin-top: 6px; width: min(100%, 256px); height: auto; border-radius: 4px; }
.codex-job { opacity: 0.6; font-family: monospace; }
.codex-error { border: 1px solid #dc2626; background: #fef2f2; color: #991b1b; border-radius: 6px;
               padding: 8px 10px; margin: 4px 0; }
.codex-rules { font-size: 0.85em; opacity: 0.8; }
.codex-demo { border: 2px dashed #f97316; border-radius: 8px; padding: 8px; }
"""

JS = """
() => {
  if (window.__codexKeys) return;
  window.__codexKeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  const pick = (suffix) => Array.from(document.querySelectorAll('button[id^="codex-"]'))
      .filter((b) => b.id.endsWith('-' + suffix) && visible(b))[0];
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      const b = pick('generate');
      if (b) { e.preventDefault(); b.click(); }
    } else if (e.key === 'Escape') {
      const b = pick('interrupt');
      if (b) { e.preventDefault(); b.click(); }
    }
  }, true);
}
"""
