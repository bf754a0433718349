/**
 * The package as a VMM gets it: `npm pack`, installed into a fresh project offline (its
 * dependencies from this machine's npm cache), compiled with the strictest settings
 * importing only the package's exports, and run: the README's embedding program
 * (examples/embedding.ts: a migration on the VMM's own backend, journaled, replayed with
 * zero divergence) and a property built from postcopy-engine/testing. Also: the
 * consumer's `npm ls` is clean, the `postcopy` bin runs, and TypeDoc builds the API docs
 * with broken links as errors.
 */
import test from 'ava';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';

interface PackInfo {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: Array<{ path: string; size: number }>;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 2 ** 20 });
}

function output(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status}\n${r.stdout}\n${r.stderr}`;
}

test('the packed package installs offline, type-checks under strict settings, embeds, replays, fuzzes and documents', (t) => {
  t.timeout(15 * 60_000);
  const work = mkdtempSync(join(tmpdir(), 'postcopy-consumer-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  // 1. The tarball: what is in it, and nothing of test/, bench/, .ci/.
  const pack = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: PACKAGE_ROOT, encoding: 'utf8' })) as PackInfo[];
  const info = pack[0]!;
  t.log(`tarball ${info.filename}: ${info.size} bytes packed, ${info.unpackedSize} unpacked, ${info.entryCount} files`);
  t.log(info.files.map((f) => `${f.path} ${f.size}`).join('\n'));
  const stray = info.files.filter((f) => /^(test|bench|\.ci|vendor|scripts|dist\/test|dist\/bench)\//.test(f.path) || f.path.endsWith('.map'));
  t.deepEqual(stray, [], 'no tests, benchmarks, CI or source maps in the tarball');
  for (const needed of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/machines/index.d.ts', 'dist/src/testing/index.d.ts', 'native/binding.gyp', 'examples/embedding.ts', 'LICENSE']) {
    t.true(info.files.some((f) => f.path === needed), `${needed} is in the tarball`);
  }

  // 2. A fresh project installs it offline (the addon and better-sqlite3 compile here).
  const app = join(work, 'app');
  mkdirSync(join(app, 'src'), { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module', allowScripts: { 'postcopy-engine': true, 'better-sqlite3': true } }, null, 2));
  const deps = [join(work, info.filename), 'fast-check@^4.10.2', 'typescript@~5.9.3', '@types/node@^20.19.0', 'typedoc@^0.28.20'];
  const started = Date.now();
  let install = run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...deps], app, { JOBS: '2' });
  if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) {
    // A machine whose cache lacks a package's metadata: fetch it once; later runs are offline.
    t.log(`not all in the npm cache (${/request to (\S+)/.exec(install.stderr)?.[1] ?? '?'}): installing with --prefer-offline`);
    install = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...deps], app, { JOBS: '2' });
  }
  t.is(install.status, 0, output(install));
  t.log(`install took ${((Date.now() - started) / 1000).toFixed(0)} s (the native addon and better-sqlite3 compile)`);
  const ls = run('npm', ['ls', '--all'], app);
  t.is(ls.status, 0, `npm ls is clean\n${output(ls)}`);
  t.notRegex(ls.stdout + ls.stderr, /\b(invalid|missing|extraneous)\b|UNMET DEPENDENCY|npm error/i);

  // 3. The consumer compiles under the strictest settings, from the package's exports only.
  copyFileSync(join(app, 'node_modules', 'postcopy-engine', 'examples', 'embedding.ts'), join(app, 'src', 'embedding.ts'));
  copyFileSync(join(PACKAGE_ROOT, 'test', 'package', 'consumer', 'property.ts'), join(app, 'src', 'property.ts'));
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], strict: true,
        noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, skipLibCheck: false, outDir: 'dist', rootDir: 'src',
      },
      include: ['src'],
    }),
  );
  const tsc = run(join(app, 'node_modules', '.bin', 'tsc'), ['-p', '.'], app);
  // skipLibCheck is off so that our declarations are checked too; xstate's own declarations
  // do not pass exactOptionalPropertyTypes, which is xstate's to fix: only those are tolerated.
  const errors = tsc.stdout.split('\n').filter((line) => /error TS/.test(line) && !line.startsWith('node_modules/xstate/'));
  t.deepEqual(errors, [], output(tsc));

  // 4. It runs: a migration on its own backend, journaled and replayed; the properties.
  const embedding = run('node', ['dist/embedding.js'], app);
  t.is(embedding.status, 0, output(embedding));
  t.regex(embedding.stdout, /state completed, 16 pages placed, replay matched \d+ events/);
  t.log(embedding.stdout.trim());
  const property = run('node', ['dist/property.js'], app, { FC_RUNS: '200' });
  t.is(property.status, 0, output(property));
  t.log(property.stdout.trim());

  // 5. The bin works from the installed package.
  const bin = run(join(app, 'node_modules', '.bin', 'postcopy'), ['--help'], app);
  t.is(bin.status, 0, output(bin));
  t.regex(bin.stdout, /migrate/);

  // 6. The API docs build from TSDoc, broken links being errors (typedoc.json).
  const docs = run(join(app, 'node_modules', '.bin', 'typedoc'), ['--out', join(work, 'api')], PACKAGE_ROOT);
  t.is(docs.status, 0, output(docs));
  t.true(readFileSync(join(work, 'api', 'index.html'), 'utf8').includes('postcopy-engine'));
});
