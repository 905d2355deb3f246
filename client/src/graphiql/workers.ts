/**
 * Monaco (GraphiQL 5's editor) runs its language services in web workers. graphiql ships setup files for
 * webpack, vite and esm.sh (a CDN); this is the esbuild one: `client/build.mjs` bundles the three workers
 * next to this script, and they are loaded from the same server, so nothing leaves the machine.
 */
function workerUrl(name: string): URL {
  return new URL(`./workers/${name}.worker.js`, import.meta.url);
}

interface MonacoEnvironment {
  getWorker(workerId: string, label: string): Worker;
}

(globalThis as typeof globalThis & { MonacoEnvironment?: MonacoEnvironment }).MonacoEnvironment = {
  getWorker(_workerId: string, label: string): Worker {
    switch (label) {
      case "json":
        return new Worker(workerUrl("json"), { name: label });
      case "graphql":
        return new Worker(workerUrl("graphql"), { name: label });
      default:
        return new Worker(workerUrl("editor"), { name: label });
    }
  },
};

export {};
