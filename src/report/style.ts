/** The report's whole stylesheet, inlined: the file must open with no network. */
export const REPORT_CSS = `
:root { --ink: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc; --panel: #fff;
  --good: #16a34a; --warn: #d97706; --bad: #dc2626; --blue: #2563eb; --blocked: #e11d48; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 20px; }
header h1 { font-size: 22px; margin: 0 0 4px; overflow-wrap: anywhere; }
header .meta { color: var(--muted); margin: 0 0 16px; overflow-wrap: anywhere; }
.banner { border-radius: 8px; padding: 10px 14px; margin: 0 0 14px; font-weight: 600; }
.banner.bad { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; }
.banner.warn { background: #fffbeb; border: 1px solid #fde68a; color: #92400e; }
.banner .cause { margin: 6px 0 0; padding-left: 20px; font-weight: 400; }
.banner .next { margin-top: 6px; font-weight: 400; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 18px; }
.card { background: var(--panel); border: 1px solid var(--line); border-left: 5px solid var(--line);
  border-radius: 8px; padding: 10px 14px; min-width: 0; }
.card.tone-good { border-left-color: var(--good); }
.card.tone-warn { border-left-color: var(--warn); }
.card.tone-bad { border-left-color: var(--bad); }
.card-label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card-value { font-size: 24px; font-weight: 650; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tone-good .card-value { color: var(--good); } .tone-warn .card-value { color: var(--warn); } .tone-bad .card-value { color: var(--bad); }
.card-value.pairs { white-space: normal; font-size: 17px; line-height: 1.5; }
.card-value .pair { margin-right: 10px; white-space: nowrap; display: inline-block; }
.card-value small { font-size: 11px; color: var(--muted); font-weight: 500; }
.card-sub { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
section.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px 8px; margin-bottom: 18px; overflow-x: auto; }
section.panel.alert { border: 2px solid var(--bad); }
section.panel h2 { font-size: 16px; margin: 0 0 2px; }
.caption { color: var(--muted); margin: 0 0 8px; font-size: 13px; }
.pair-plots { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.pair-plots section.panel { margin-bottom: 0; }
.pair-wrap { margin-bottom: 18px; }
svg.plot { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg .axis { stroke: #475569; stroke-width: 1; }
svg .grid { stroke: #eef2f7; stroke-width: 1; }
svg .tick { font-size: 11px; fill: #475569; }
svg .axis-label { font-size: 12px; fill: #334155; }
svg .lane-label { font-size: 12px; fill: #1e293b; }
svg .lane-label.strong { font-weight: 650; font-size: 13px; }
svg .lane-sub { font-size: 10.5px; fill: var(--muted); }
svg .lane { fill: #f1f5f9; }
svg .bar-label { font-size: 11px; fill: #0f172a; pointer-events: none; }
svg .bar-label.on-dark { fill: #fff; }
svg .state { stroke: #fff; stroke-width: .5; }
svg .pause { fill: #f59e0b; fill-opacity: .16; stroke: #f59e0b; stroke-opacity: .6; stroke-dasharray: 4 3; }
svg .pause-label { font-size: 11px; fill: #b45309; font-weight: 600; }
svg .area { fill: var(--blue); fill-opacity: .12; }
svg .line { fill: none; stroke: var(--blue); stroke-width: 2; }
svg .outstanding-mark { fill: var(--bad); }
svg .outstanding-label { font-size: 12px; font-weight: 650; fill: var(--bad); }
svg .blocked { fill: var(--blocked); }
svg .still-blocked { fill: #881337; }
svg .duration-label { font-size: 11.5px; font-weight: 650; fill: #9f1239; }
svg .bar { fill: #6366f1; }
svg .cdf { fill: none; stroke: #6366f1; stroke-width: 2; }
svg .mark { stroke: #475569; stroke-width: 1; stroke-dasharray: 2 3; }
svg .mark.mark-stderr { stroke: var(--bad); }
svg .mark.mark-end { stroke: #0f172a; stroke-dasharray: none; stroke-width: 1.5; }
svg .mark-label { font-size: 11px; fill: #334155; }
svg text.mark-stderr { fill: #991b1b; }
svg .marker { stroke: #0f172a; stroke-width: 1; stroke-dasharray: 3 3; }
svg .marker-max { stroke: var(--bad); }
svg .marker-label { font-size: 11px; fill: #0f172a; }
svg .empty { font-size: 14px; fill: var(--muted); }
svg rect:hover, svg path:hover { stroke: #0f172a; stroke-width: 1; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 4px 0 8px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td { overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.empty-table, .more { color: var(--muted); margin: 4px 0 10px; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin: 8px 0 20px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(2, 1fr); } .pair-plots { grid-template-columns: 1fr; } }
`;
