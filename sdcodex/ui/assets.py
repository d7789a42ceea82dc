"""The page's CSS and the keyboard shortcuts: Ctrl+Enter presses the visible tab's Generate, Esc its
Interrupt (only when no dropdown list or lightbox is open), Ctrl+Up / Ctrl+Down in a prompt box change the weight of the selected words (A1111's keys;
docs/ui.md); the dark-mode choice is kept in localStorage ("codex-theme")."""

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
.codex-token-counter { font-size: 0.8em; opacity: 0.75; text-align: right; min-height: 0; margin-top: -0.5em; }
.codex-slider input[type="number"] { min-width: 5em; }
.codex-slider label, .codex-slider .head { overflow: visible; white-space: normal; }
#codex-dark, #codex-swap, #codex-random-seed { max-width: 48px; min-width: 40px; }
.dark .codex-error { background: #450a0a; color: #fecaca; }
.codex-demo { border: 2px dashed #f97316; border-radius: 8px; padding: 8px; }
.codex-hidden { display: none !important; }
.codex-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.codex-card { position: relative; border: 1px solid var(--border-color-primary, #d1d5db); border-radius: 8px;
              overflow: hidden; cursor: pointer; background: var(--block-background-fill, #fff); }
.codex-card:hover, .codex-card:focus { outline: 2px solid var(--color-accent, #f97316); }
.codex-card img { display: block; width: 100%; aspect-ratio: 3 / 4; object-fit: cover; }
.codex-card-name { font-weight: 600; padding: 4px 6px 0; word-break: break-all; }
.codex-card-meta { font-size: 0.75em; opacity: 0.8; padding: 0 6px 6px; }
.codex-cards-empty { opacity: 0.7; padding: 8px; }
"""

JS = r"""
() => {
  if (window.__codexKeys) return;
  window.__codexKeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  const pick = (suffix) => Array.from(document.querySelectorAll('button[id^="codex-"]'))
      .filter((b) => b.id.endsWith('-' + suffix) && visible(b))[0];
  // A1111's edit-attention: the selection (or the (...) block or word under the caret) gets (text:w),
  // w moves by 0.1, and at 1.0 the brackets go away.
  const DELIMITERS = '.,\\/!?%^*;:{}=`~() \t\n\r';
  const selectBlockOrWord = (text, start, end) => {
    if (start !== end) return [start, end];
    const before = text.slice(0, start), after = text.slice(start);
    const open = before.lastIndexOf('('), closedBefore = before.lastIndexOf(')');
    const close = after.indexOf(')'), openAfter = after.indexOf('(');
    if (open !== -1 && closedBefore < open && close !== -1 && (openAfter === -1 || openAfter > close)) {
      const inner = text.slice(open + 1, start + close);
      const colon = /:\s*[-+]?[\d.]+\s*$/.test(inner) ? inner.lastIndexOf(':') : inner.length;
      return [open + 1, open + 1 + colon];
    }
    while (start > 0 && !DELIMITERS.includes(text[start - 1])) start--;
    while (end < text.length && !DELIMITERS.includes(text[end])) end++;
    return [start, end];
  };
  const editAttention = (area, up) => {
    let text = area.value;
    let [start, end] = selectBlockOrWord(text, area.selectionStart, area.selectionEnd);
    while (end > start && text[end - 1] === ' ') end--;
    if (start === end) return false;
    if (start === 0 || text[start - 1] !== '(') {
      text = text.slice(0, start) + '(' + text.slice(start, end) + ':1.0)' + text.slice(end);
      start += 1; end += 1;
    }
    if (text[end] !== ':') return false;
    const length = text.slice(end + 1).indexOf(')');
    let weight = parseFloat(text.slice(end + 1, end + 1 + length));
    if (length < 0 || isNaN(weight)) return false;
    weight = parseFloat((weight + (up ? 0.1 : -0.1)).toPrecision(12));
    if (weight === 1) {
      text = text.slice(0, start - 1) + text.slice(start, end) + text.slice(end + 2 + length);
      start -= 1; end -= 1;
    } else {
      const shown = Number.isInteger(weight) ? weight.toFixed(1) : String(weight);
      text = text.slice(0, end + 1) + shown + text.slice(end + 1 + length);
    }
    area.value = text;
    area.setSelectionRange(start, end);
    area.dispatchEvent(new Event('input', { bubbles: true }));
    return true;
  };
  // an open dropdown list, a gallery's detailed view (lightbox), a dialog or a fullscreen view
  const POPUPS = '[role="listbox"], [role="dialog"], dialog[open], '
      + 'button[aria-label="detailed view of selected image"]';
  const popupOpen = () => !!document.fullscreenElement
      || Array.from(document.querySelectorAll(POPUPS)).some((el) => visible(el));
  const isPromptBox = (el) => el && el.tagName === 'TEXTAREA' && !!el.closest('[id$="-prompt"]');
  // extra networks: a LoRA/embedding card adds its text to the prompt box last typed in (when it is in the
  // open tab; else the open tab's prompt), a second click on the same LoRA removes it (A1111's toggle); a
  // checkpoint/VAE card tells the server through a hidden box
  let lastPrompt = null;
  document.addEventListener('focusin', (e) => { if (isPromptBox(e.target)) lastPrompt = e.target; }, true);
  const activePrompt = () => {
    if (visible(lastPrompt) && !lastPrompt.closest('#codex-styles-editor')) return lastPrompt;
    return Array.from(document.querySelectorAll('[id^="codex-"][id$="-prompt"] textarea'))
      .filter((t) => visible(t) && !t.closest('[id$="-negative-prompt"]') && !t.closest('#codex-styles-editor'))[0];
  };
  const setText = (area, text) => {
    area.value = text;
    area.dispatchEvent(new Event('input', { bubbles: true }));
  };
  const cardClick = (card) => {
    const kind = card.dataset.kind, insert = card.dataset.insert || '';
    if (kind === 'lora' || kind === 'embedding') {
      const area = activePrompt();
      if (!area || !insert) return;
      const text = area.value;
      if (kind === 'lora' && text.includes(insert)) {
        setText(area, text.replace(insert, '').replace(/ {2,}/g, ' ').replace(/^[ ,]+|[ ,]+$/g, ''));
      } else {
        const sep = !text || /[\s,]$/.test(text) ? '' : (kind === 'lora' ? ' ' : ', ');
        setText(area, text + sep + insert);
      }
      area.focus();
    } else {
      const box = document.querySelector('#codex-en-select textarea, #codex-en-select input');
      if (box) setText(box, kind + '\t' + card.dataset.name);
    }
  };
  document.addEventListener('click', (e) => {
    const card = e.target.closest && e.target.closest('.codex-card');
    if (card) { e.preventDefault(); cardClick(card); }
  });
  document.addEventListener('keydown', (e) => {
    const card = e.target.closest && e.target.closest('.codex-card');
    if (card && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); cardClick(card); }
  });
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && isPromptBox(e.target)) {
      if (editAttention(e.target, e.key === 'ArrowUp')) e.preventDefault();
    } else if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      const b = pick('generate');
      if (b) { e.preventDefault(); b.click(); }
    } else if (e.key === 'Escape') {
      // Esc closes an open popup (dropdown list, image lightbox) first; it interrupts only when none is open
      if (popupOpen()) return;
      const b = pick('interrupt');
      if (b) { e.preventDefault(); b.click(); }
    }
  }, true);
  // A typed slider value beyond the slider's range is kept as typed (the request's validation refuses it with
  // the API's message); Gradio would otherwise clamp it silently when the number box loses focus.
  document.addEventListener('blur', (e) => {
    const t = e.target;
    if (!t || t.tagName !== 'INPUT' || t.type !== 'number' || !t.closest('.codex-slider')) return;
    const v = parseFloat(t.value);
    if (t.value === '' || isNaN(v) || v < parseFloat(t.min) || v > parseFloat(t.max)) e.stopImmediatePropagation();
  }, true);
  if (localStorage.getItem('codex-theme') === 'dark') document.body.classList.add('dark');
}
"""

#: the dark-mode button's script (no server call)
DARK_TOGGLE = """() => { const on = document.body.classList.toggle('dark');
  localStorage.setItem('codex-theme', on ? 'dark' : 'light'); }"""
