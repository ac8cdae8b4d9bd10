#!/usr/bin/env node
// What SES received for the one-click unsubscribe case, from the recording
// proxy's JSONL file.
//
//   unsubscribe.js url  --log FILE --marker M --to RCPT
//       prints the https URI of the List-Unsubscribe field of the accepted
//       SendEmail that carries M and goes to RCPT alone (mode add: one
//       request per recipient); exits 1 if there is none or the field is
//       not RFC 8058 one-click.
//   unsubscribe.js dest --log FILE --marker M
//       prints the Destination of every accepted SendEmail carrying M, one
//       address per line, sorted.
'use strict';

const fs = require('fs');

function arg(name) {
    const i = process.argv.indexOf('--' + name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

function accepted(file, marker) {
    if (!fs.existsSync(file)) return [];
    return fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(l => JSON.parse(l))
        .filter(e => e.status === 200)
        .map(e => {
            const data = e.body && e.body.Content && e.body.Content.Raw && e.body.Content.Raw.Data;
            e.raw = data ? Buffer.from(data, 'base64').toString('latin1') : '';
            e.to = (e.body && e.body.Destination && e.body.Destination.ToAddresses) || [];
            return e;
        })
        .filter(e => e.raw.includes(marker));
}

// field returns the unfolded value of the first header field called name.
function field(raw, name) {
    const end = raw.indexOf('\r\n\r\n');
    const lines = (end < 0 ? raw : raw.slice(0, end)).split('\r\n');
    for (let i = 0; i < lines.length; i++) {
        const c = lines[i].indexOf(':');
        if (c > 0 && lines[i].slice(0, c).toLowerCase() === name.toLowerCase()) {
            let v = lines[i].slice(c + 1);
            while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1])) v += lines[++i];
            return v.trim();
        }
    }
    return undefined;
}

const [cmd] = process.argv.slice(2);
const log = arg('log');
const marker = arg('marker');
if (!log || !marker) {
    console.error('usage: unsubscribe.js url|dest --log FILE --marker M [--to RCPT]');
    process.exit(2);
}
const reqs = accepted(log, marker);

if (cmd === 'dest') {
    console.log(reqs.flatMap(e => e.to).sort().join('\n'));
    process.exit(0);
}
if (cmd === 'url') {
    const to = arg('to');
    const mine = reqs.filter(e => e.to.length === 1 && e.to[0] === to);
    if (mine.length !== 1) {
        console.error(`expected one accepted request with ${marker} to ${to} alone, found ${mine.length}`);
        process.exit(1);
    }
    const lu = field(mine[0].raw, 'List-Unsubscribe');
    const post = field(mine[0].raw, 'List-Unsubscribe-Post');
    if (post !== 'List-Unsubscribe=One-Click') {
        console.error(`List-Unsubscribe-Post is ${JSON.stringify(post)}`);
        process.exit(1);
    }
    const https = ((lu || '').match(/<[^>]*>/g) || []).map(u => u.slice(1, -1)).filter(u => u.startsWith('https:'));
    if (https.length !== 1) {
        console.error(`List-Unsubscribe ${JSON.stringify(lu)} does not hold exactly one https URI`);
        process.exit(1);
    }
    console.log(https[0]);
    process.exit(0);
}
console.error(`unknown command ${cmd}`);
process.exit(2);
