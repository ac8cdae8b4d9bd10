#!/usr/bin/env node
// Recording proxy in front of the SES v2 emulator.
//
// The emulator keeps only the fields it parses, so this proxy records what
// the relay really sent: every request body (the SES v2 JSON with the raw
// message in base64, Destination, ConfigurationSetName, EmailTags) goes to
// a JSONL file, one line per request, with the status the relay was given.
//
//   node ses-proxy.js --port P --upstream http://127.0.0.1:E --log FILE
//
// Control (not forwarded): POST /__e2e/mode with body "up" (forward, the
// default) or "unavailable" (answer 503 ServiceUnavailable, as SES does when
// it is overloaded) or "failing" (every SendEmail fails, alternately 503
// ServiceUnavailable and 429 TooManyRequestsException, as in an SES outage
// with throttling). When the upstream cannot be reached the proxy answers
// 502, as a load balancer in front of a stopped service does.
'use strict';

const http = require('http');
const fs = require('fs');

function arg(name, def) {
    const i = process.argv.indexOf('--' + name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const port = Number(arg('port'));
const upstream = new URL(arg('upstream', 'http://127.0.0.1:8005'));
const logFile = arg('log');
if (!port || !logFile) {
    console.error('usage: ses-proxy.js --port P --upstream URL --log FILE');
    process.exit(2);
}

let mode = 'up';
let failures = 0;

function record(entry) {
    fs.appendFileSync(logFile, JSON.stringify(entry) + '\n');
}

function parseBody(buf) {
    try {
        return JSON.parse(buf.toString('utf8'));
    } catch {
        return { unparsed: buf.toString('base64') };
    }
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks);

        if (req.url === '/__e2e/mode' && req.method === 'POST') {
            const m = body.toString('utf8').trim();
            if (m !== 'up' && m !== 'unavailable' && m !== 'failing') {
                res.writeHead(400).end('mode must be up, unavailable or failing\n');
                return;
            }
            mode = m;
            res.writeHead(200).end(mode + '\n');
            return;
        }

        const entry = { time: new Date().toISOString(), method: req.method, path: req.url, body: parseBody(body) };
        const isSend = req.method === 'POST' && req.url.startsWith('/v2/email/outbound-emails');

        if (mode === 'failing' && isSend) {
            failures++;
            const throttle = failures % 2 === 0;
            entry.status = throttle ? 429 : 503;
            record(entry);
            res.writeHead(entry.status, {
                'content-type': 'application/json',
                'x-amzn-errortype': throttle ? 'TooManyRequestsException' : 'ServiceUnavailableException'
            });
            res.end(JSON.stringify({ message: throttle ? 'Maximum sending rate exceeded.' : 'Service Unavailable' }));
            return;
        }

        if (mode === 'unavailable') {
            entry.status = 503;
            if (isSend) record(entry);
            res.writeHead(503, {
                'content-type': 'application/json',
                'x-amzn-errortype': 'ServiceUnavailableException'
            });
            res.end(JSON.stringify({ message: 'Service Unavailable' }));
            return;
        }

        const headers = { ...req.headers, host: upstream.host, 'content-length': String(body.length) };
        const up = http.request(
            { hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, timeout: 10000 },
            upRes => {
                const out = [];
                upRes.on('data', c => out.push(c));
                upRes.on('end', () => {
                    const respBody = Buffer.concat(out);
                    entry.status = upRes.statusCode;
                    entry.response = parseBody(respBody);
                    if (isSend) record(entry);
                    const h = { ...upRes.headers };
                    delete h['transfer-encoding'];
                    h['content-length'] = String(respBody.length);
                    res.writeHead(upRes.statusCode, h);
                    res.end(respBody);
                });
            }
        );
        up.on('timeout', () => up.destroy(new Error('upstream timeout')));
        up.on('error', err => {
            if (res.headersSent) {
                res.destroy();
                return;
            }
            entry.status = 502;
            entry.error = err.code || err.message;
            if (isSend) record(entry);
            res.writeHead(502, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ message: 'Bad Gateway' }));
        });
        up.end(body);
    });
});

server.listen(port, '127.0.0.1', () => {
    console.log(`ses-proxy: listening on 127.0.0.1:${port}, upstream ${upstream.href}, log ${logFile}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => process.exit(0));
}
