// The GraphQL-over-HTTP audit suite of `graphql-http` (serverAudits) against a live server.
//
//     GRAPHQL_HTTP_AUDIT_API_KEY=uek_… node audit.mjs http://127.0.0.1:8000/graphql
//
// Prints one JSON line per audit: {"id", "name", "status", "reason"}; status is "ok", or, for
// a failed audit, "error" (MUST), "warn" (SHOULD) or "notice" (MAY), and a failed audit also
// tells what the server answered ("response": status and content type). An audit that
// crashed (the server unreachable, say) is reported as "error" and the exit code is 1.
// The key comes from the environment rather than the command line, where `ps` shows it.
import { serverAudits } from 'graphql-http';

const [url] = process.argv.slice(2);
const apiKey = process.env.GRAPHQL_HTTP_AUDIT_API_KEY;
if (!url || !apiKey) {
  console.error('usage: GRAPHQL_HTTP_AUDIT_API_KEY=<api key> node audit.mjs <graphql url>');
  process.exit(2);
}

// Every request of every audit carries the key: without it the service answers 401.
async function fetchWithKey(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${apiKey}`);
  return fetch(input, { ...init, headers });
}

let crashed = false;
// One after another, so that the server's log reads in the order of the audits.
for (const { id, name, fn } of serverAudits({ url, fetchFn: fetchWithKey })) {
  let line;
  try {
    const result = await fn();
    line = { id, name, status: result.status, reason: result.reason ?? null };
    if (result.response) {
      line.response = {
        status: result.response.status,
        contentType: result.response.headers.get('content-type'),
      };
    }
  } catch (error) {
    crashed = true;
    line = { id, name, status: 'error', reason: `the audit crashed: ${error?.stack ?? error}` };
  }
  console.log(JSON.stringify(line));
}
process.exit(crashed ? 1 : 0);
