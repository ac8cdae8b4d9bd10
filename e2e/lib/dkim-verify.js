#!/usr/bin/env node
// Verifies the relay's DKIM signature on a raw message as SES received it,
// with mailauth (an independent DKIM implementation). The public keys come
// from a local map built from the private key files: no DNS.
//
//   dkim-verify.js --raw FILE --key DOMAIN:SELECTOR:PRIVATE_KEY_PEM [--key ...]
//                  [--record DOMAIN:SELECTOR:RECORD_FILE]
//                  --expect-domain D --expect-algo rsa-sha256|ed25519-sha256
//
// --record takes the key record as an operator would publish it (the text
// `sesrelay dkim keygen` prints: the quoted strings are joined).
//
// Checks: exactly one DKIM-Signature; it passes for D with the algorithm,
// relaxed/relaxed, aligned with the From domain; it still passes after
// SES-style header additions on top; it fails after the body or a signed
// header is changed, and after a second Subject is added (oversigning).
// Exit 0: all hold; 1: a check failed; 3: the message carries no signature.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
// The DKIM verifier alone: mailauth's main entry also loads its BIMI code,
// whose HTTP client needs a newer Node than the one this suite runs on.
const { dkimVerify } = require('mailauth/lib/dkim/verify');

function parseArgs(argv) {
    const out = { key: [], record: [] };
    for (let i = 0; i < argv.length; i += 2) {
        const k = argv[i].replace(/^--/, '');
        if (k === 'key' || k === 'record') out[k].push(argv[i + 1]);
        else out[k] = argv[i + 1];
    }
    return out;
}

// txtRecord returns the DKIM TXT record for a private key file (RFC 6376
// for RSA, RFC 8463 for Ed25519: the raw 32-byte public key).
function txtRecord(pemFile) {
    const pub = crypto.createPublicKey(crypto.createPrivateKey(fs.readFileSync(pemFile)));
    if (pub.asymmetricKeyType === 'ed25519') {
        const der = pub.export({ format: 'der', type: 'spki' });
        return `v=DKIM1; k=ed25519; p=${der.subarray(der.length - 32).toString('base64')}`;
    }
    return `v=DKIM1; k=rsa; p=${pub.export({ format: 'der', type: 'spki' }).toString('base64')}`;
}

// recordFromText reads a published TXT record: the quoted strings joined,
// or else the line that starts with v=DKIM1.
function recordFromText(text) {
    const quoted = [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map(m => m[1]);
    if (quoted.length) return quoted.join('');
    const m = text.match(/v=DKIM1[^\r\n]*/);
    return m ? m[0].trim() : '';
}

const o = parseArgs(process.argv.slice(2));
const records = new Map();
for (const spec of o.key) {
    const [domain, selector, file] = spec.split(':');
    records.set(`${selector}._domainkey.${domain}`.toLowerCase(), txtRecord(file));
}
for (const spec of o.record) {
    const [domain, selector, file] = spec.split(':');
    const rr = recordFromText(fs.readFileSync(file, 'utf8'));
    console.log(`  dkim: published record for ${selector}._domainkey.${domain}: ${rr.slice(0, 60)}...`);
    records.set(`${selector}._domainkey.${domain}`.toLowerCase(), rr);
}

let lookups = 0;
const resolver = async (name, rrtype) => {
    lookups++;
    const rr = rrtype === 'TXT' && records.get(String(name).toLowerCase().replace(/\.$/, ''));
    if (!rr) {
        const err = new Error(`no ${rrtype} record for ${name} in the local map`);
        err.code = 'ENOTFOUND';
        throw err;
    }
    // Like dns.resolveTxt: one record, split into strings of at most 255 bytes.
    return [rr.match(/.{1,255}/g)];
};

const raw = fs.readFileSync(o.raw);
const failures = [];

function splitMessage(buf) {
    const s = buf.toString('latin1');
    const i = s.indexOf('\r\n\r\n');
    return [s.slice(0, i + 2), s.slice(i + 2)];
}

async function verify(buf) {
    const res = await dkimVerify(buf, { resolver });
    return res.results.filter(r => r.signingDomain !== undefined || r.status.result !== 'none');
}

function describe(r) {
    return `${r.status.result}${r.status.comment ? ' (' + r.status.comment + ')' : ''} d=${r.signingDomain} s=${r.selector} a=${r.algo} c=${r.format}`;
}

async function main() {
    const [head, body] = splitMessage(raw);
    const sigCount = (head.match(/^DKIM-Signature:/gim) || []).length;
    if (sigCount === 0) {
        console.log('  dkim: the message SES received carries no DKIM-Signature');
        process.exit(3);
    }
    if (sigCount !== 1) failures.push(`${sigCount} DKIM-Signature fields, SES accepts exactly one`);

    const results = await verify(raw);
    const r = results[0];
    if (!r) {
        failures.push('mailauth found no signature to verify');
    } else {
        console.log(`  dkim: mailauth: ${describe(r)}; aligned=${r.status.aligned}`);
        if (r.status.result !== 'pass') failures.push(`signature does not verify: ${describe(r)}`);
        if (o['expect-domain'] && r.signingDomain !== o['expect-domain']) failures.push(`d=${r.signingDomain}, want ${o['expect-domain']}`);
        if (o['expect-algo'] && r.algo !== o['expect-algo']) failures.push(`a=${r.algo}, want ${o['expect-algo']}`);
        if (r.format !== 'relaxed/relaxed') failures.push(`c=${r.format}, want relaxed/relaxed`);
        if (!r.status.aligned) failures.push('signature is not aligned with the From domain');
        const sig = head.match(/^DKIM-Signature:.*(\r\n[ \t].*)*/im)[0].replace(/\r\n[ \t]+/g, ' ');
        if (/[;\s]l=/.test(sig)) failures.push('signature has an l= tag');
        const h = (sig.match(/[;\s]h=([^;]*)/) || [, ''])[1].replace(/\s+/g, '').toLowerCase().split(':');
        for (const never of ['message-id', 'date', 'return-path', 'received']) {
            if (h.includes(never)) failures.push(`h= signs ${never}`);
        }
        if (h.filter(x => x === 'from').length < 2) failures.push(`From is not oversigned: h=${h.join(':')}`);
    }

    // What SES does on the way out: add its own fields on top.
    const sesAdded = Buffer.from('X-SES-Outgoing: 2026.01.01-127.0.0.1\r\nFeedback-ID: 1.us-east-1.e2e:AmazonSES\r\n' + head + body, 'latin1');
    const afterSES = await verify(sesAdded);
    if (!afterSES[0] || afterSES[0].status.result !== 'pass') failures.push(`fields added on top (as SES does) break the signature: ${afterSES[0] && describe(afterSES[0])}`);

    const tamperings = [
        ['body changed', head + body.replace(/[A-Za-z]/, c => (c === 'x' ? 'y' : 'x'))],
        ['Subject changed', head.replace(/^Subject:[^\r\n]*/im, 'Subject: changed after signing') + body],
        ['second Subject added', 'Subject: added after signing\r\n' + head + body],
        ['second From added', 'From: intruder@attacker.example\r\n' + head + body]
    ];
    for (const [what, text] of tamperings) {
        const t = await verify(Buffer.from(text, 'latin1'));
        console.log(`  dkim: after ${what}: ${t[0] ? describe(t[0]) : "no result"}`);
        if (t[0] && t[0].status.result === 'pass') failures.push(`still verifies after ${what}`);
    }
    if (lookups === 0) failures.push('the verifier never asked the resolver for a key');

    for (const f of failures) console.log('  dkim: ' + f);
    process.exit(failures.length ? 1 : 0);
}

main().catch(err => {
    console.log('  dkim: ' + (err.stack || err));
    process.exit(1);
});
