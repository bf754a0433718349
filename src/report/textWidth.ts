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

/** Advance widths, em: [DejaVu Sans, DejaVu Sans Bold], for printable ASCII and the other characters labels use. */
const ADVANCES: Record<string, readonly [number, number]> = {
  " ": [0.318, 0.348], "!": [0.401, 0.456], "\"": [0.46, 0.521], "#": [0.838, 0.838], "$": [0.636, 0.696],
  "%": [0.95, 1.002], "&": [0.78, 0.872], "'": [0.275, 0.306], "(": [0.39, 0.457], ")": [0.39, 0.457],
  "*": [0.5, 0.523], "+": [0.838, 0.838], ",": [0.318, 0.38], "-": [0.361, 0.415], ".": [0.318, 0.38],
  "/": [0.337, 0.365], "0": [0.636, 0.696], "1": [0.636, 0.696], "2": [0.636, 0.696], "3": [0.636, 0.696],
  "4": [0.636, 0.696], "5": [0.636, 0.696], "6": [0.636, 0.696], "7": [0.636, 0.696], "8": [0.636, 0.696],
  "9": [0.636, 0.696], ":": [0.337, 0.4], ";": [0.337, 0.4], "<": [0.838, 0.838], "=": [0.838, 0.838],
  ">": [0.838, 0.838], "?": [0.531, 0.58], "@": [1, 1], "A": [0.684, 0.774], "B": [0.686, 0.762],
  "C": [0.698, 0.734], "D": [0.77, 0.83], "E": [0.632, 0.683], "F": [0.575, 0.683], "G": [0.775, 0.821],
  "H": [0.752, 0.837], "I": [0.295, 0.372], "J": [0.295, 0.372], "K": [0.656, 0.775], "L": [0.557, 0.637],
  "M": [0.863, 0.995], "N": [0.748, 0.837], "O": [0.787, 0.85], "P": [0.603, 0.733], "Q": [0.787, 0.85],
  "R": [0.695, 0.77], "S": [0.635, 0.72], "T": [0.611, 0.682], "U": [0.732, 0.812], "V": [0.684, 0.774],
  "W": [0.989, 1.103], "X": [0.685, 0.771], "Y": [0.611, 0.724], "Z": [0.685, 0.725], "[": [0.39, 0.457],
  "\\": [0.337, 0.365], "]": [0.39, 0.457], "^": [0.838, 0.838], "_": [0.5, 0.5], "`": [0.5, 0.5],
  "a": [0.613, 0.675], "b": [0.635, 0.716], "c": [0.55, 0.593], "d": [0.635, 0.716], "e": [0.615, 0.678],
  "f": [0.352, 0.435], "g": [0.635, 0.716], "h": [0.634, 0.712], "i": [0.278, 0.343], "j": [0.278, 0.343],
  "k": [0.579, 0.665], "l": [0.278, 0.343], "m": [0.974, 1.042], "n": [0.634, 0.712], "o": [0.612, 0.687],
  "p": [0.635, 0.716], "q": [0.635, 0.716], "r": [0.411, 0.493], "s": [0.521, 0.595], "t": [0.392, 0.478],
  "u": [0.634, 0.712], "v": [0.592, 0.652], "w": [0.818, 0.924], "x": [0.592, 0.645], "y": [0.592, 0.652],
  "z": [0.525, 0.582], "{": [0.636, 0.712], "|": [0.337, 0.365], "}": [0.636, 0.712], "~": [0.838, 0.838],
  "µ": [0.636, 0.736], "—": [1, 1], "→": [0.838, 0.838], "…": [1, 1], "·": [0.318, 0.38],
  "×": [0.838, 0.838], "–": [0.5, 0.5],
};

/** Pure: the drawn width of `text` at `sizePx`, px (bold: a font weight of 600 or more). */
export function textWidth(text: string, sizePx: number, bold = false): number {
  let em = 0;
  for (const c of text) em += ADVANCES[c]?.[bold ? 1 : 0] ?? 1;
  return em * sizePx;
}
