#!/usr/bin/env python3
"""A real SMTP server for alertd's e-mail tests (aiosmtpd).

Listens on 127.0.0.1 on a port the OS picks and prints `LISTENING <port>` on stdout once it
accepts connections. Every accepted message is appended to the --out file as one JSON line:
mail_from, rcpt_tos, auth_user, tls, headers (name -> first decoded value), header_list
([name, decoded value] for every header, in order, repeated ones included), text, html, raw.
Runs until killed or stdin closes.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import warnings
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="file that gets one JSON line per message")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"),
                   help="offer and require STARTTLS with this certificate")
    p.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"),
                   help="TLS from the first byte (SMTPS)")
    p.add_argument("--auth", metavar="USER:PASS", help="require AUTH PLAIN/LOGIN with these")
    p.add_argument("--reject", type=int, metavar="CODE",
                   help="answer every RCPT TO with this code (e.g. 451, 550)")
    p.add_argument("--reject-data", type=int, metavar="CODE",
                   help="accept recipients but answer the end of DATA with this code")
    p.add_argument("--verbose", action="store_true",
                   help="log aiosmtpd's sessions and errors to stderr (quiet by default, since "
                        "tests provoke failed TLS handshakes on purpose)")
    return p.parse_args()


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def part_text(msg, kind):
    part = msg.get_body(preferencelist=(kind,))
    if part is None or part.get_content_type() != "text/" + kind:
        return None
    return part.get_content()


class Sink:
    def __init__(self, args):
        self.args = args

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.reject:
            return "%d Recipient rejected by test sink" % self.args.reject
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.reject_data:
            return "%d Message rejected by test sink" % self.args.reject_data
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = message_from_bytes(raw, policy=policy.default)
        headers = {}
        header_list = []
        for name, value in msg.items():
            value = str(value)
            header_list.append([name, value])
            headers.setdefault(name, value)
        transport = server.transport
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": session.auth_data if isinstance(session.auth_data, str) else None,
            "tls": transport is not None and transport.get_extra_info("ssl_object") is not None,
            "headers": headers,
            "header_list": header_list,
            "text": part_text(msg, "plain"),
            "html": part_text(msg, "html"),
            "raw": raw.decode("utf-8", errors="replace"),
        }
        with open(self.args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def make_authenticator(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", errors="replace")
        pw = auth_data.password.decode("utf-8", errors="replace")
        if login == user and pw == password:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    return authenticate


async def main():
    args = parse_args()
    if not args.verbose:
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        # AUTH without STARTTLS is intended with implicit TLS (which aiosmtpd cannot see).
        warnings.simplefilter("ignore", UserWarning)
    kwargs = {"hostname": "sink.test", "timeout": 30}
    server_ssl = None
    if args.starttls:
        kwargs["tls_context"] = tls_context(*args.starttls)
        kwargs["require_starttls"] = True
    if args.implicit_tls:
        server_ssl = tls_context(*args.implicit_tls)
    if args.auth:
        user, _, password = args.auth.partition(":")
        kwargs["authenticator"] = make_authenticator(user, password)
        kwargs["auth_required"] = True
        # Plain-text AUTH is refused unless the session is STARTTLS-encrypted; implicit TLS
        # and plain sinks accept it (aiosmtpd does not see implicit TLS).
        kwargs["auth_require_tls"] = bool(args.starttls)
    sink = Sink(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, **kwargs), host="127.0.0.1", port=0, ssl=server_ssl
    )
    port = server.sockets[0].getsockname()[1]
    print("LISTENING %d" % port, flush=True)

    # Stop when the test closes our stdin (or dies).
    stop = asyncio.Event()

    def on_stdin():
        if not sys.stdin.buffer.read1(4096):
            stop.set()

    try:
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    except (ValueError, OSError, NotImplementedError):
        pass
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
