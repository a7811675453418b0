// Bench-only: the reference y-websocket server (@y/websocket-server 0.1.1,
// its own setupWSConnection, in memory: no persistence) on PORT, so
// scripts/bench-dialects.sh can run the same tandem-load workload against it
// and Tandem in one run. The room is the URL path (tandem-load asks for
// /ws/<session>, which this server takes as the room name "ws/<session>").
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { setupWSConnection } from '@y/websocket-server/utils';

const port = Number(process.env.PORT ?? 3300);
const server = http.createServer((_req, res) => { res.writeHead(200); res.end('ok'); });
const wss = new WebSocketServer({ noServer: true });
wss.on('connection', setupWSConnection);
server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
server.listen(port, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${port}`));
