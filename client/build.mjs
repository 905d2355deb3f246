// Builds the browser assets the server serves, into neuron_explainer/activation_server/static/ (gitignored):
//   graphiql/  GraphiQL 5 from the npm package, its CSS and Monaco's web workers (no CDN, nothing remote)
//   viewer/    the viewer page (React + urql + the generated hooks)
// Runs `graphql-codegen` first (skip with --no-codegen). Output is deterministic: fixed entry names,
// content-hashed assets, no timestamps. Usage: node client/build.mjs [--no-codegen] [--dev] [--base=/static]
import { spawnSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const dev = args.includes("--dev");
const runCodegen = !args.includes("--no-codegen");
/** URL prefix under which the server mounts the static folder (Starlette `Mount("/static", StaticFiles(...))`). */
const base = (args.find((a) => a.startsWith("--base="))?.slice("--base=".length) ?? "/static").replace(/\/$/, "");
const staticDir = path.join(root, "neuron_explainer", "activation_server", "static");
const nodeModules = path.join(root, "node_modules");

function codegen() {
  const bin = path.join(nodeModules, ".bin", "graphql-codegen");
  const result = spawnSync(bin, ["--config", "codegen.yml", "--silent"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) throw new Error(`graphql-codegen failed (exit ${result.status ?? result.signal})`);
}

/** @type {esbuild.BuildOptions} */
const common = {
  bundle: true,
  minify: !dev,
  sourcemap: dev ? "linked" : false,
  target: ["es2022"],
  platform: "browser",
  absWorkingDir: root,
  nodePaths: [nodeModules],
  define: { "process.env.NODE_ENV": JSON.stringify(dev ? "development" : "production") },
  loader: { ".ttf": "file", ".woff": "file", ".woff2": "file", ".svg": "file", ".png": "file" },
  assetNames: "assets/[name]-[hash]",
  legalComments: "external",
  logLevel: "warning",
  metafile: true,
};

function page(title, cssHref, scriptSrc, mountId) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<link rel="stylesheet" href="${cssHref}">
<style>html, body { height: 100%; margin: 0; } #graphiql { height: 100vh; }</style>
</head>
<body>
<div id="${mountId}"></div>
<noscript>This page needs JavaScript.</noscript>
<script type="module" src="${scriptSrc}"></script>
</body>
</html>
`;
}

async function buildGraphiql() {
  const out = path.join(staticDir, "graphiql");
  const workers = esbuild.build({
    ...common,
    entryPoints: {
      editor: "monaco-editor/esm/vs/editor/editor.worker.js",
      json: "monaco-editor/esm/vs/language/json/json.worker.js",
      graphql: "monaco-graphql/esm/graphql.worker.js",
    },
    entryNames: "[name].worker",
    outdir: path.join(out, "workers"),
    format: "iife",
  });
  const app = esbuild.build({
    ...common,
    entryPoints: { graphiql: "client/src/graphiql/main.tsx" },
    outdir: out,
    format: "esm",
  });
  const results = await Promise.all([workers, app]);
  await writeFile(
    path.join(out, "index.html"),
    page("neuron-explainer · GraphiQL", `${base}/graphiql/graphiql.css`, `${base}/graphiql/graphiql.js`, "graphiql"),
  );
  return results;
}

async function buildViewer() {
  const out = path.join(staticDir, "viewer");
  const result = await esbuild.build({
    ...common,
    entryPoints: { viewer: "client/src/viewer/main.tsx" },
    outdir: out,
    format: "esm",
  });
  await writeFile(
    path.join(out, "index.html"),
    page("neuron-explainer · viewer", `${base}/viewer/viewer.css`, `${base}/viewer/viewer.js`, "root"),
  );
  return [result];
}

function sizes(results) {
  const lines = [];
  for (const r of results) {
    for (const [file, info] of Object.entries(r.metafile.outputs)) {
      if (file.endsWith(".map")) continue;
      lines.push(`  ${path.relative(root, path.join(root, file))}  ${(info.bytes / 1024).toFixed(0)} KiB`);
    }
  }
  return lines.sort().join("\n");
}

const started = performance.now();
if (runCodegen) codegen();
await rm(path.join(staticDir, "graphiql"), { recursive: true, force: true });
await rm(path.join(staticDir, "viewer"), { recursive: true, force: true });
await mkdir(staticDir, { recursive: true });
const results = (await Promise.all([buildGraphiql(), buildViewer()])).flat();
console.log(`built ${path.relative(root, staticDir)}/ in ${((performance.now() - started) / 1000).toFixed(1)} s\n${sizes(results)}`);
