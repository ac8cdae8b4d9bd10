#!/usr/bin/env python3
"""Sends one message through the relay with Python's smtplib (stdlib only).

Prints one line, "REPLY <code> <text>": the reply to the command that
decided the transaction (250 after DATA, or the refusal of MAIL, RCPT or
DATA). Exits 0 when it could talk to the server, 2 otherwise.
"""
import argparse
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import make_msgid, formatdate


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["starttls", "implicit"], default="starttls")
    p.add_argument("--auth", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mail-from", required=True)
    p.add_argument("--rcpt", action="append", required=True)
    p.add_argument("--from-header")
    p.add_argument("--to-header")
    p.add_argument("--subject", required=True)
    p.add_argument("--header", action="append", default=[], help="extra 'Name: value'")
    p.add_argument("--body", default="Sent by the sesrelay end-to-end suite with Python smtplib.\n")
    p.add_argument("--body-bytes", type=int, default=0, help="pad the body to about this size")
    p.add_argument("--save", help="write the message as sent to this file (for a retry)")
    p.add_argument("--eml", help="send this file as the message instead of building one")
    a = p.parse_args()

    if a.eml:
        with open(a.eml, "rb") as f:
            data = f.read()
    else:
        msg = EmailMessage()
        msg["From"] = a.from_header or a.mail_from
        msg["To"] = a.to_header or a.rcpt[0]
        msg["Subject"] = a.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=a.mail_from.split("@")[-1])
        for h in a.header:
            name, _, value = h.partition(":")
            msg[name.strip()] = value.strip()
        body = a.body
        if a.body_bytes:
            line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
            body += line * (a.body_bytes // len(line) + 1)
        msg.set_content(body)
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if a.save:
        with open(a.save, "wb") as f:
            f.write(data)

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        if a.mode == "implicit":
            s = smtplib.SMTP_SSL("127.0.0.1", a.port, context=ctx, timeout=30)
        else:
            s = smtplib.SMTP("127.0.0.1", a.port, timeout=30)
            s.starttls(context=ctx)
        s.ehlo()
        s.user, s.password = a.user, a.password
        if a.auth == "LOGIN":
            s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        else:
            s.auth("PLAIN", s.auth_plain)
    except (OSError, smtplib.SMTPException) as e:
        print(f"ERROR {type(e).__name__}: {e}")
        return 2

    try:
        # smtplib adds SIZE= to MAIL when the server advertises SIZE.
        code, text = s.mail(a.mail_from, ["SIZE=%d" % len(data)] if s.has_extn("size") else [])
        if code != 250:
            return reply(s, code, text)
        for r in a.rcpt:
            code, text = s.rcpt(r)
            if code not in (250, 251):
                return reply(s, code, text)
        code, text = s.data(data)
        return reply(s, code, text)
    except smtplib.SMTPServerDisconnected as e:
        print(f"ERROR disconnected: {e}")
        return 2


def reply(s, code, text):
    print(f"REPLY {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}")
    try:
        s.quit()
    except (OSError, smtplib.SMTPException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
