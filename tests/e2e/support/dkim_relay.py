"""The two mail servers between a person and dualca, for the `dualca enroll` test.

It plays the person's mail provider, which DKIM-signs (RFC 6376) what the person submits, and
the organisation's mail exchanger in front of dualca, which verifies the signature and records
the result in an Authentication-Results header (RFC 8601) before it hands the mail to dualca's
SMTP intake. Signing and verifying are real (dkimpy); DNS is the one stand-in, since this
machine has none: the verifier is handed the selector's TXT record directly.

Usage: dkim_relay.py LISTEN_PORT INTAKE_HOST INTAKE_PORT KEY_PEM TXT_RECORD DOMAIN SELECTOR AUTHSERV_ID
The intake's answer to each message is passed back to the submitter, so a refusal reaches it.
"""

import smtplib
import sys
import time

import dkim
from aiosmtpd.controller import Controller

listen_port, intake_host, intake_port, key_pem, txt_record, domain, selector, authserv = sys.argv[1:9]
with open(key_pem, "rb") as f:
    private_key = f.read()
with open(txt_record, "rb") as f:
    record = f.read().strip()


def lookup(name, timeout=5):
    expected = f"{selector}._domainkey.{domain}.".encode()
    return record if name.rstrip(b".") + b"." == expected else None


class Relay:
    async def handle_DATA(self, server, session, envelope):
        message = envelope.original_content
        signature = dkim.sign(
            message,
            selector.encode(),
            domain.encode(),
            private_key,
            include_headers=[b"from", b"to", b"subject", b"in-reply-to"],
        )
        signed = signature + message
        verdict = "pass" if dkim.verify(signed, dnsfunc=lookup) else "fail"
        results = f"Authentication-Results: {authserv}; dkim={verdict} header.d={domain} header.s={selector}\r\n"
        try:
            with smtplib.SMTP(intake_host, int(intake_port), timeout=10) as intake:
                intake.sendmail(envelope.mail_from, envelope.rcpt_tos, results.encode() + signed)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            return f"{code} {text.decode(errors='replace')}"
        except smtplib.SMTPResponseException as e:
            return f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}"
        return "250 2.0.0 relayed with dkim=" + verdict


controller = Controller(Relay(), hostname="127.0.0.1", port=int(listen_port))
controller.start()
print("listening", flush=True)
# Bounded: the test kills the relay when it is done; this is the backstop.
time.sleep(600)
controller.stop()
