// The reference y-socket.io server (npm y-socket.io 1.1.3), configured as its
// README shows, with LevelDB persistence so both servers keep documents
// durably. Prints the same "listening on" line as Tandem.
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from 'socket.io';
import { YSocketIO } from 'y-socket.io/dist/server';

const port = Number(process.env.PORT ?? 3200);
const server = createServer();
const io = new Server(server, { maxHttpBufferSize: 4 << 20 });
const ysocketio = new YSocketIO(io, { levelPersistenceDir: process.env.PERSIST_DIR ?? mkdtempSync(join(tmpdir(), 'ysio-')), gcEnabled: true });
ysocketio.initialize();
server.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${port}`));
