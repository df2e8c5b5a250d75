// ANSI colour codes in task output as styled pieces: SGR sequences (ESC [ … m) set
// bold and the 16 standard colours; every other escape sequence is dropped. The
// text itself is never interpreted as HTML: the pieces become text nodes.

const ESCAPE = /\x1b\[([0-9;]*)([A-Za-z])|\x1b[@-Z\\-_]|\r(?!\n)/g;

/** Splits `text` into [{text, classes}] pieces. */
export function ansiPieces(text) {
  const pieces = [];
  let state = { fg: null, bg: null, bold: false };
  let at = 0;
  const push = (piece) => {
    if (!piece) return;
    const classes = [];
    if (state.bold) classes.push('ansi-bold');
    if (state.fg !== null) classes.push('ansi-fg' + state.fg);
    if (state.bg !== null) classes.push('ansi-bg' + state.bg);
    pieces.push({ text: piece, classes: classes.join(' ') });
  };
  for (const match of text.matchAll(ESCAPE)) {
    push(text.slice(at, match.index));
    at = match.index + match[0].length;
    if (match[2] !== 'm') continue;
    const codes = match[1] === '' ? [0] : match[1].split(';').map(Number);
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (code === 0) state = { fg: null, bg: null, bold: false };
      else if (code === 1) state.bold = true;
      else if (code === 22) state.bold = false;
      else if (code >= 30 && code <= 37) state.fg = code - 30;
      else if (code >= 90 && code <= 97) state.fg = code - 90 + 8;
      else if (code === 39) state.fg = null;
      else if (code >= 40 && code <= 47) state.bg = code - 40;
      else if (code >= 100 && code <= 107) state.bg = code - 100 + 8;
      else if (code === 49) state.bg = null;
      else if (code === 38 || code === 48) i += codes[i + 1] === 5 ? 2 : 4; // 256/true colour: skipped
    }
  }
  push(text.slice(at));
  return pieces;
}
