// Bench-only: Hocuspocus 3.4.4 with no extensions (in memory, no
// persistence, no auth hooks) on PORT, so scripts/bench-dialects.sh can run
// the same tandem-load workload (--dialect hocuspocus) against it and Tandem.
import { Server } from '@hocuspocus/server';

const port = Number(process.env.PORT ?? 3400);
const server = new Server({ port, address: '127.0.0.1', quiet: true, debounce: 2000 });
await server.listen();
console.log(`listening on http://127.0.0.1:${port}`);
