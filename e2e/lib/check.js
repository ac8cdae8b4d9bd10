#!/usr/bin/env node
// Checks what SES received, from the recording proxy's JSONL file and the
// emulator's store. Prints one line per problem and exits 1 when there is
// any, 0 otherwise.
//
//   check.js sent --log FILE --marker M [--to a,b] [--config-set CS]
//            [--tags k=v,k=v] [--absent-header NAME]... [--absent-text S]...
//            [--header-has NAME=TEXT]... [--tracking-disabled]
//            [--queued-id ID] [--store URL] [--raw-out FILE]
//       exactly one accepted SendEmail carries M in its raw message; every
//       given property holds (Destination and tags are compared as sets,
//       exactly).
//   check.js none --log FILE --marker M
//       no SendEmail carrying M reached SES (whatever its status).
//   check.js count --log FILE --marker M --status N --expect K
//       exactly K SendEmail requests carrying M were answered N.
'use strict';

const fs = require('fs');

function parseArgs(argv) {
    const out = { _: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (!a.startsWith('--')) {
            out._.push(a);
            continue;
        }
        const key = a.slice(2);
        const next = argv[i + 1];
        const value = next === undefined || next.startsWith('--') ? true : (i++, next);
        if (out[key] === undefined) out[key] = value;
        else out[key] = [].concat(out[key], value);
    }
    return out;
}

const list = v => (v === undefined ? [] : [].concat(v));

function readLog(file) {
    if (!fs.existsSync(file)) return [];
    return fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(l => JSON.parse(l))
        .map(e => {
            const data = e.body && e.body.Content && e.body.Content.Raw && e.body.Content.Raw.Data;
            e.raw = data ? Buffer.from(data, 'base64') : Buffer.alloc(0);
            return e;
        });
}

// headerSection returns the unfolded header fields of a raw message as
// [name, value] pairs.
function headerSection(raw) {
    const text = raw.toString('latin1');
    let end = text.indexOf('\r\n\r\n');
    if (end < 0) end = text.indexOf('\n\n');
    const head = end < 0 ? text : text.slice(0, end);
    const fields = [];
    for (const line of head.split(/\r?\n/)) {
        if (/^[ \t]/.test(line) && fields.length) {
            fields[fields.length - 1][1] += ' ' + line.trim();
        } else {
            const i = line.indexOf(':');
            if (i > 0) fields.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
        }
    }
    return fields;
}

const sameSet = (a, b) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

async function checkSent(o, problems) {
    const marker = o.marker;
    const hits = readLog(o.log).filter(e => e.raw.includes(marker));
    const ok = hits.filter(e => e.status === 200);
    if (ok.length !== 1) {
        problems.push(`expected exactly one accepted SendEmail with ${marker}, found ${ok.length} (of ${hits.length} requests)`);
        return;
    }
    const e = ok[0];
    const b = e.body;
    if (o['raw-out']) fs.writeFileSync(o['raw-out'], e.raw);

    if (o.to !== undefined) {
        const want = String(o.to).split(',').filter(Boolean);
        const d = b.Destination || {};
        const got = [].concat(d.ToAddresses || [], d.CcAddresses || [], d.BccAddresses || []);
        if (!sameSet(got, want)) problems.push(`Destination: got [${got}], want [${want}]`);
    }
    if (o['config-set'] !== undefined && b.ConfigurationSetName !== o['config-set']) {
        problems.push(`ConfigurationSetName: got ${JSON.stringify(b.ConfigurationSetName)}, want ${JSON.stringify(o['config-set'])}`);
    }
    if (o.tags !== undefined) {
        const want = String(o.tags).split(',').filter(Boolean);
        const got = (b.EmailTags || []).map(t => `${t.Name}=${t.Value}`);
        if (!sameSet(got, want)) problems.push(`EmailTags: got [${got}], want [${want}]`);
    }
    const fields = headerSection(e.raw);
    for (const name of list(o['absent-header'])) {
        const found = fields.filter(([n]) => n.toLowerCase() === String(name).toLowerCase() || (String(name).endsWith('*') && n.toLowerCase().startsWith(String(name).slice(0, -1).toLowerCase())));
        if (found.length) problems.push(`header ${found[0][0]} must not reach SES, found: ${found[0][0]}: ${found[0][1]}`);
    }
    for (const spec of list(o['header-has'])) {
        const i = String(spec).indexOf('=');
        const name = spec.slice(0, i).toLowerCase();
        const text = spec.slice(i + 1);
        const values = fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
        if (!values.some(v => v.includes(text))) problems.push(`header ${spec.slice(0, i)} should contain ${JSON.stringify(text)}, got ${JSON.stringify(values)}`);
    }
    for (const s of list(o['absent-text'])) {
        if (e.raw.includes(String(s))) problems.push(`raw message must not contain ${JSON.stringify(s)}`);
    }
    if (o['tracking-disabled']) {
        const t = b.ConfigurationOverrides && b.ConfigurationOverrides.Tracking;
        if (!t || t.ClickTrackingEnabled !== 'DISABLED' || t.OpenTrackingEnabled !== 'DISABLED') {
            problems.push(`ConfigurationOverrides.Tracking should disable click and open tracking, got ${JSON.stringify(b.ConfigurationOverrides)}`);
        }
    }
    const sesID = e.response && e.response.MessageId;
    if (o['queued-id'] !== undefined && o['queued-id'] !== sesID) {
        problems.push(`the SMTP reply says queued as ${JSON.stringify(o['queued-id'])}, SES answered MessageId ${JSON.stringify(sesID)}`);
    }
    if (o.store) {
        const res = await fetch(o.store.replace(/\/$/, '') + '/store', { signal: AbortSignal.timeout(5000) });
        const store = await res.json();
        const m = (store.emails || []).find(x => x.messageId === sesID);
        if (!m) problems.push(`the emulator's store has no message ${sesID}`);
        else if (!String(m.subject).includes(marker)) problems.push(`the emulator stored subject ${JSON.stringify(m.subject)}, want one with ${marker}`);
    }
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const cmd = o._[0];
    const problems = [];
    if (!o.log || !o.marker) {
        console.error('check.js: --log and --marker are required');
        process.exit(2);
    }
    switch (cmd) {
        case 'sent':
            await checkSent(o, problems);
            break;
        case 'none': {
            const hits = readLog(o.log).filter(e => e.raw.includes(o.marker));
            if (hits.length) problems.push(`${hits.length} SendEmail request(s) with ${o.marker} reached SES, want none (status ${hits.map(h => h.status)})`);
            break;
        }
        case 'count': {
            const hits = readLog(o.log).filter(e => e.raw.includes(o.marker) && e.status === Number(o.status));
            if (hits.length !== Number(o.expect)) problems.push(`${hits.length} SendEmail request(s) with ${o.marker} answered ${o.status}, want ${o.expect}`);
            break;
        }
        default:
            console.error(`check.js: unknown command ${cmd}`);
            process.exit(2);
    }
    for (const p of problems) console.log('  check: ' + p);
    process.exit(problems.length ? 1 : 0);
}

main().catch(err => {
    console.log('  check: ' + (err.stack || err));
    process.exit(1);
});
