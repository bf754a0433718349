/**
 * The layers, enforced: machines → engine → testing → native → journal → forensics → io → report → cli,
 * then src/index.ts (the package's entry point) on top, which may import everything.
 * A module may import its own layer and the layers before it, never a later one; errors.ts and
 * text.ts may be imported from anywhere, paths.ts and regularFile.ts from native on (it touches the file system).
 * machines/ and src/engine/ import nothing from Node (`node:` or a bare built-in): the engine
 * stays pure and replayable. Type-only imports count too: a type names a dependency as well.
 */
import test from 'ava';
import { builtinModules } from 'node:module';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

const LAYERS = ['machines', 'engine', 'testing', 'native', 'journal', 'forensics', 'io', 'report', 'cli', 'index'] as const;
const ANYWHERE = new Set(['src/errors.ts', 'src/text.ts']);
const FROM_NATIVE_ON = new Set(['src/paths.ts', 'src/regularFile.ts']);
const PURE_LAYERS = new Set(['machines', 'engine']);

/** A module's layer index, or the reason it has none (an unknown folder must be placed first). */
function layerOf(file: string): number {
  if (file.startsWith('machines/')) return 0;
  if (ANYWHERE.has(file)) return -1;
  if (FROM_NATIVE_ON.has(file)) return LAYERS.indexOf('native');
  if (file === 'src/index.ts') return LAYERS.indexOf('index');
  const folder = /^src\/([^/]+)\//.exec(file)?.[1];
  const index = LAYERS.indexOf(folder as (typeof LAYERS)[number]);
  if (index < 0) throw new Error(`${file} lies in no layer: put it in one of src/{${LAYERS.slice(1, -1).join(',')}}/ or add it to the layer table`);
  return index;
}

/** Every module specifier of a TypeScript source: static imports and re-exports, dynamic imports. */
export function importsOf(source: string): string[] {
  const specs: string[] = [];
  const pattern = /(?:^|[\s;])(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(pattern)) specs.push((m[1] ?? m[2] ?? m[3])!);
  return specs;
}

const NODE_BUILTINS = new Set(builtinModules);

/** Pure: every import of `file` (a repository path) that crosses the layer order, as sentences. */
export function violationsOf(file: string, source: string): string[] {
  const layer = layerOf(file);
  const problems: string[] = [];
  for (const spec of importsOf(source)) {
    if (spec.startsWith('.')) {
      const target = posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts');
      const targetLayer = layerOf(target);
      if (layer === -1 && targetLayer !== -1) problems.push(`${file} (imported from anywhere) imports ${target}`);
      else if (targetLayer > layer) problems.push(`${file} (${LAYERS[layer]}) imports ${target} (${LAYERS[targetLayer]}), a later layer`);
    } else if ((layer === -1 || PURE_LAYERS.has(LAYERS[layer]!)) && (spec.startsWith('node:') || NODE_BUILTINS.has(spec.split('/')[0]!))) {
      problems.push(`${file} imports ${spec}: machines/ and src/engine/ stay pure (no Node modules)`);
    }
  }
  return problems;
}

function sources(dir: string): string[] {
  return readdirSync(join(PACKAGE_ROOT, dir)).flatMap((name) => {
    const path = posix.join(dir, name);
    if (statSync(join(PACKAGE_ROOT, path)).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

test('every import of src/ and machines/ follows the layer order, and the engine imports nothing from Node', (t) => {
  const files = [...sources('machines'), ...sources('src')];
  t.true(files.length > 50, `found only ${files.length} sources under ${relative(process.cwd(), PACKAGE_ROOT) || '.'}`);
  const problems = files.flatMap((file) => violationsOf(file, readFileSync(join(PACKAGE_ROOT, file), 'utf8')));
  t.deepEqual(problems, []);
});

test('a planted crossing is caught: the engine importing io, the journal importing forensics, a node: import in machines', (t) => {
  t.deepEqual(violationsOf('src/engine/destination.ts', "import { UffdBackend } from '../io/backends/uffdBackend.js';"), [
    'src/engine/destination.ts (engine) imports src/io/backends/uffdBackend.ts (io), a later layer',
  ]);
  t.deepEqual(violationsOf('src/journal/replay.ts', "import type { Analysis } from '../forensics/analysisTypes.js';"), [
    'src/journal/replay.ts (journal) imports src/forensics/analysisTypes.ts (forensics), a later layer',
  ]);
  t.deepEqual(violationsOf('machines/step.ts', "import { readFileSync } from 'node:fs';\nexport * from 'fs';"), [
    'machines/step.ts imports node:fs: machines/ and src/engine/ stay pure (no Node modules)',
    'machines/step.ts imports fs: machines/ and src/engine/ stay pure (no Node modules)',
  ]);
  t.deepEqual(violationsOf('src/engine/x.ts', "const m = await import('../cli/main.js');"), ['src/engine/x.ts (engine) imports src/cli/main.ts (cli), a later layer']);
  t.deepEqual(violationsOf('src/text.ts', "import { x } from './report/svg.js';"), ['src/text.ts (imported from anywhere) imports src/report/svg.ts']);
  t.deepEqual(violationsOf('src/engine/ports.ts', "import { PACKAGE_ROOT } from '../paths.js';"), [
    'src/engine/ports.ts (engine) imports src/paths.ts (native), a later layer',
  ]);
  t.deepEqual(violationsOf('src/cli/main.ts', "import { step } from '../../machines/index.js';\nimport { pack } from 'msgpackr';"), []);
  t.throws(() => violationsOf('src/elsewhere/x.ts', ''), { message: /lies in no layer/ });
  t.deepEqual(violationsOf('src/testing/arbitraries.ts', "import { MockBackend } from '../io/backends/mockBackend.js';"), [
    'src/testing/arbitraries.ts (testing) imports src/io/backends/mockBackend.ts (io), a later layer',
  ]);
  t.deepEqual(violationsOf('src/index.ts', "export * from './cli/main.js';\nexport * from '../machines/index.js';"), []);
  t.deepEqual(violationsOf('src/cli/main.ts', "import { x } from '../index.js';"), ['src/cli/main.ts (cli) imports src/index.ts (index), a later layer']);
  // src/io/fleet (Parquet export, DuckDB queries) is io: it reads journals and the analysis, never the CLI or the report.
  t.deepEqual(violationsOf('src/io/fleet/parquetExport.ts', "import { columns } from '../../cli/inspectCommand.js';\nimport { startAnalysis } from '../../forensics/analysis.js';"), [
    'src/io/fleet/parquetExport.ts (io) imports src/cli/inspectCommand.ts (cli), a later layer',
  ]);
});
