"""A loopback RFC 3161 timestamp authority for the tests, with a test CA: it answers a
TimeStampReq with a token signed by its certificate (extended key usage timeStamping).

``mode``: ``ok``; ``refuse`` (status rejection); ``other`` (a token about another imprint).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import itertools
import threading

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


TST_INFO = "1.2.840.113549.1.9.16.1.4"


class TimestampAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate, mode: str = "ok") -> None:
        self.key, self.certificate, self.mode = key, certificate, mode
        self.serials = itertools.count(1)
        self.requests = 0
        self.errors: list[str] = []
        authority = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                authority.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    answer = authority.answer(tsp.TimeStampReq.load(body))
                except Exception as exc:  # kept for the test to show, the connection closed
                    authority.errors.append(f"{type(exc).__name__}: {exc}")
                    raise
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"

    def stop(self) -> None:
        self.server.shutdown()

    def answer(self, request: tsp.TimeStampReq) -> bytes:
        if self.mode == "refuse":
            # a TimeStampResp without its token (asn1crypto's class insists on one): SEQUENCE { PKIStatusInfo }
            status = tsp.PKIStatusInfo({"status": "rejection", "fail_info": {"bad_request"}}).dump()
            return b"\x30" + bytes([len(status)]) + status
        imprint = request["message_imprint"]
        if self.mode == "other":
            imprint = tsp.MessageImprint({"hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                                          "hashed_message": hashlib.sha256(b"another signature").digest()})
        tst = tsp.TSTInfo({"version": 1, "policy": "1.2.250.1.999.1", "message_imprint": imprint, "serial_number": next(self.serials),
                           "gen_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0), "nonce": request["nonce"].native})
        tst_der = tst.dump()
        cert = asn1_x509.Certificate.load(self.certificate.public_bytes(serialization.Encoding.DER))
        signed_attrs = cms.CMSAttributes([
            # by OID: asn1crypto learns the name tst_info when its tsp module is imported, which a
            # process may do after ContentType cached its names
            cms.CMSAttribute({"type": "content_type", "values": [TST_INFO]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]}),
        ])
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}}),
            "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": signature,
        })
        signed = cms.SignedData({"version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
                                 "encap_content_info": {"content_type": TST_INFO, "content": tst},
                                 "certificates": [cert], "signer_infos": [signer]})
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()
