#!/usr/bin/env node
// Sends one message through the relay with nodemailer.
//
//   nodemailer-send.js --port P --mode implicit|starttls --auth PLAIN|LOGIN
//                      --user U --password PW --from ADDR --to ADDR
//                      [--bcc ADDR] [--subject S] [--from-header "Name <addr>"]
//                      [--header "Name: value"]...
//
// Prints "REPLY <code> <text>" with the server's reply that decided the
// transaction and exits 0 when it could talk to the server, 2 otherwise.
'use strict';

const util = require('util');
const nodemailer = require('nodemailer');

function parseArgs(argv) {
    const out = { header: [] };
    for (let i = 0; i < argv.length; i += 2) {
        const k = argv[i].replace(/^--/, '');
        if (k === 'header') out.header.push(argv[i + 1]);
        else out[k] = argv[i + 1];
    }
    return out;
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const implicit = o.mode === 'implicit';
    // nodemailer's protocol log, to report which AUTH mechanism it used.
    const commands = [];
    const record = (entry, message, ...args) => {
        if (!entry || entry.tnx !== 'client') return;
        const m = util.format(message, ...args).match(/^(AUTH [A-Z0-9-]+|STARTTLS)/);
        if (m) commands.push(m[1]);
    };
    const logger = { trace: record, debug: record, info: record, warn: record, error: record, fatal: record, level: () => {} };
    const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: Number(o.port),
        secure: implicit,
        requireTLS: !implicit,
        authMethod: o.auth || 'PLAIN',
        auth: { user: o.user, pass: o.password },
        tls: { rejectUnauthorized: false },
        connectionTimeout: 10000,
        greetingTimeout: 10000,
        socketTimeout: 30000,
        logger,
        debug: true
    });
    const headers = {};
    for (const h of o.header) {
        const i = h.indexOf(':');
        headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
    const message = {
        from: o['from-header'] || o.from,
        to: o.to,
        subject: o.subject || 'sesrelay e2e (nodemailer)',
        text: 'Sent by the sesrelay end-to-end suite with nodemailer.\n',
        html: '<p>Sent by the sesrelay end-to-end suite with <b>nodemailer</b>.</p>',
        headers,
        envelope: { from: o.from, to: [o.to].concat(o.bcc ? [o.bcc] : []) }
    };
    if (o.bcc) message.bcc = o.bcc;
    const used = () => console.log(`USED ${commands.join(' ')}`);
    try {
        const info = await transport.sendMail(message);
        used();
        console.log(`REPLY ${info.response}`);
        return 0;
    } catch (err) {
        used();
        if (err.responseCode) {
            console.log(`REPLY ${err.response}`);
            return 0;
        }
        console.log(`ERROR ${err.code || ''} ${err.message}`);
        return 2;
    } finally {
        transport.close();
    }
}

main().then(code => process.exit(code));
