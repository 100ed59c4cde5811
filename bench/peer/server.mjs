// PostGraphile 5 over the benchmark database: the peer of `make bench-peer`
// (bench/peer_run.py starts it with the Node.js of the `node` package, NODE_ENV=production).
//
//   node server.mjs            PEER_DATABASE_URL=postgresql://…  PEER_PORT=…  [PEER_POOL_SIZE=20]
//
// One process: node's own http server with grafserv, the schema introspected once from
// `public` (the service's tables, and the benchmark's function bench_events_in_range).
// No GraphiQL, no watch mode, no explain, no subscriptions, no websockets.
import { createServer } from "node:http";

import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const connectionString = process.env.PEER_DATABASE_URL;
const port = Number(process.env.PEER_PORT ?? "5678");
if (!connectionString) {
  console.error("PEER_DATABASE_URL is not set");
  process.exit(2);
}

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      // The service's pool holds 20 connections per process (USAGE_EVENTS_DATABASE_POOL_SIZE).
      poolConfig: { max: Number(process.env.PEER_POOL_SIZE ?? "20") },
      // No LISTEN connection: nothing here subscribes.
      pubsub: false,
    }),
  ],
  grafserv: {
    port,
    host: "127.0.0.1",
    graphqlPath: "/graphql",
    graphiql: false,
    graphqlOverGET: false,
    watch: false,
    websockets: false,
  },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
// The schema is built before the port opens: a client that connects gets an answer.
await pgl.getSchema();
await serv.addTo(server);
server.listen(port, "127.0.0.1", () => {
  console.log(`postgraphile listening on http://127.0.0.1:${port}/graphql`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    pgl.release().finally(() => process.exit(0));
  });
}
