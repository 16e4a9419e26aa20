// The audible cue for a new red or orange alert, synthesised with WebAudio (no sound files).
// Browsers allow audio only after a user gesture: the context is made when the user logs in.
let ctx = null;

export function unlockAudio() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!ctx && Ctx) ctx = new Ctx();
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
}

// Red: three high beeps; orange: two lower ones. Counted on <body data-beeps> for tests.
export function beep(level) {
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  document.body.dataset.lastBeep = level;
  if (!ctx) return;
  const [n, freq] = level === "red" ? [3, 880] : [2, 660];
  const start = ctx.currentTime + 0.05;
  for (let i = 0; i < n; i++) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    const t0 = start + i * 0.3;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.25, t0 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0);
    osc.stop(t0 + 0.22);
  }
}
