import re,statistics,glob
pat=re.compile(r'scenario 1 run \d (relay \(SES over (HTTPS?)\)|baseline)( at half load)? +(\d+) msg/s p50 ([\d.]+) p99 ([\d.]+) ms, ([\d.]+) ms CPU/msg \(stand-in ([\d.]+), generator ([\d.]+)\).*over (\d+) conns')
for v in ['old','new']:
    rows={}
    for f in [f'run-{v}.log']:
        for line in open(f):
            m=pat.search(line)
            if not m: continue
            key=(m.group(2) or 'baseline')+(' half' if m.group(3) else '')
            rows.setdefault(key,[]).append(dict(rate=int(m.group(4)),p99=float(m.group(6)),cpu=float(m.group(7)),gen=float(m.group(9)),conns=int(m.group(10))))
    print('==',v)
    for k,r in sorted(rows.items()):
        med=lambda f: statistics.median(f(x) for x in r)
        print(f"{k:16} n={len(r)} rate={med(lambda x:x['rate']):.0f} p99={med(lambda x:x['p99']):.2f} cpu={med(lambda x:x['cpu']):.3f} cpu/gen={med(lambda x:x['cpu']/x['gen']):.2f} conns={med(lambda x:x['conns']):.0f}")
