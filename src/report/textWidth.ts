/**
 * How wide a label of the report's SVG plots is drawn, px, so that labels are placed apart
 * by their real extent, not by a guess per character (a guess of 6.6 px let two bold labels
 * touch in Chromium: "7.912 ms" is 59 px at 11.5 px, not 53).
 *
 * The widths are the advance widths (em) of DejaVu Sans and DejaVu Sans Bold, read from the
 * fonts' hmtx tables: Chromium draws the report with DejaVu Sans on Debian (what system-ui
 * and sans-serif resolve to there, and the widest font of the stylesheet's list), in bold for
 * a weight of 600 or more. Printable ASCII and the few other characters labels use are
 * listed; any other character counts as 1 em.
 */

/** Advances of ' ' (U+0020) to '~' (U+007E), DejaVu Sans, em. */
const REGULAR_ASCII = [
  0.318, 0.401, 0.46, 0.838, 0.636, 0.95, 0.78, 0.275, 0.39, 0.39, 0.5, 0.838,
  0.318, 0.361, 0.318, 0.337, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636,
  0.636, 0.636, 0.337, 0.337, 0.838, 0.838, 0.838, 0.531, 1, 0.684, 0.686, 0.698,
  0.77, 0.632, 0.575, 0.775, 0.752, 0.295, 0.295, 0.656, 0.557, 0.863, 0.748, 0.787,
  0.603, 0.787, 0.695, 0.635, 0.611, 0.732, 0.684, 0.989, 0.685, 0.611, 0.685, 0.39,
  0.337, 0.39, 0.838, 0.5, 0.5, 0.613, 0.635, 0.55, 0.635, 0.615, 0.352, 0.635,
  0.634, 0.278, 0.278, 0.579, 0.278, 0.974, 0.634, 0.612, 0.635, 0.635, 0.411, 0.521,
  0.392, 0.634, 0.592, 0.818, 0.592, 0.592, 0.525, 0.636, 0.337, 0.636, 0.838,
];
/** The same, DejaVu Sans Bold. */
const BOLD_ASCII = [
  0.348, 0.456, 0.521, 0.838, 0.696, 1.002, 0.872, 0.306, 0.457, 0.457, 0.523, 0.838,
  0.38, 0.415, 0.38, 0.365, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696,
  0.696, 0.696, 0.4, 0.4, 0.838, 0.838, 0.838, 0.58, 1, 0.774, 0.762, 0.734,
  0.83, 0.683, 0.683, 0.821, 0.837, 0.372, 0.372, 0.775, 0.637, 0.995, 0.837, 0.85,
  0.733, 0.85, 0.77, 0.72, 0.682, 0.812, 0.774, 1.103, 0.771, 0.724, 0.725, 0.457,
  0.365, 0.457, 0.838, 0.5, 0.5, 0.675, 0.716, 0.593, 0.716, 0.678, 0.435, 0.716,
  0.712, 0.343, 0.343, 0.665, 0.343, 1.042, 0.712, 0.687, 0.716, 0.716, 0.493, 0.595,
  0.478, 0.712, 0.652, 0.924, 0.645, 0.652, 0.582, 0.712, 0.365, 0.712, 0.838,
];
const REGULAR_OTHER: Record<string, number> = { 'µ': 0.636, '—': 1, '→': 0.838, '…': 1, '·': 0.318, '×': 0.838, '–': 0.5 };
const BOLD_OTHER: Record<string, number> = { 'µ': 0.736, '—': 1, '→': 0.838, '…': 1, '·': 0.38, '×': 0.838, '–': 0.5 };

/** Pure: the drawn width of `text` at `sizePx`, px (bold: a font weight of 600 or more). */
export function textWidth(text: string, sizePx: number, bold = false): number {
  const ascii = bold ? BOLD_ASCII : REGULAR_ASCII;
  const other = bold ? BOLD_OTHER : REGULAR_OTHER;
  let em = 0;
  for (const c of text) {
    const code = c.codePointAt(0)!;
    em += code >= 0x20 && code <= 0x7e ? ascii[code - 0x20]! : (other[c] ?? 1);
  }
  return em * sizePx;
}
