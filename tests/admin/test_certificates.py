"""
TLS entities through the Admin API: a gateway node on 127.0.0.1 with the
real PostgreSQL (C{/certificates} by id or SNI name with the C{snis}
shorthand, C{/certificates/{c}/snis}, C{/snis}, C{/ca_certificates}),
a service's TLS fields and a route's C{snis}; and aio-kong's
certificate tests as behaviour.
"""
from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed

from echogate.testing import MemoryStore
from tests.admin.test_admin import AdminTestCase
from tests.admin.test_upstreams import UpstreamsTestCase
from tests.certs import make_ca, make_leaf, make_self_signed

NOT_FOUND = {"message": "Not found"}
SNI_NOT_FOUND = {"message": "SNI not found"}

CA = make_ca()
ONE = make_leaf(CA, ["one.test"])
TWO = make_leaf(CA, ["two.test"], kind="ec")
OTHER = make_self_signed(["other.test"])


class CertificatesTestCase(UpstreamsTestCase):
    """
    A gateway node on a fresh database, with helpers for certificates.
    """

    async def certificate(self, pair: Any = ONE, **fields: Any) -> dict:
        return await self.ok("POST", "/certificates", 201,
                             json={"cert": pair.chain_pem, "key": pair.key_pem, **fields})

    async def fails(self, method: str, path: str, code: int = 400, **kw: Any) -> Any:
        answer = await self.gw.admin(method, path, **kw)
        self.assertEqual(answer.code, code, answer.body)
        return answer.json()

    async def names(self) -> list[str]:
        return sorted(s["name"] for s in (await self.ok("GET", "/snis"))["data"])


class CertificateEndpointTests(CertificatesTestCase):
    """
    C{/certificates} and C{/certificates/{id or sni name}}.
    """

    async def test_addCertificate(self) -> None:
        """
        aio-kong's test_add_certificate: created with no snis, its nested
        list is empty, the list works and it can be deleted by id.
        """
        created = await self.certificate()
        self.assertEqual(created["snis"], [])
        self.assertEqual(created["key"], ONE.key_pem)
        self.assertEqual((await self.ok("GET", f"/certificates/{created['id']}/snis"))["data"], [])
        self.assertEqual((await self.ok("GET", "/certificates"))["data"], [created])
        await self.ok("DELETE", f"/certificates/{created['id']}", 204)
        self.assertEqual((await self.ok("GET", "/certificates"))["data"], [])

    async def test_snisShorthand(self) -> None:
        """
        C{snis} on create makes the sni rows; reads list the names sorted;
        the certificate is found by any of them.
        """
        created = await self.certificate(snis=["b.test", "*.a.test"])
        self.assertEqual(created["snis"], ["*.a.test", "b.test"])
        self.assertEqual(await self.names(), ["*.a.test", "b.test"])
        self.assertEqual(await self.ok("GET", "/certificates/b.test"), created)
        self.assertEqual(await self.ok("GET", f"/certificates/{created['id']}"), created)
        sni = await self.ok("GET", "/snis/b.test")
        self.assertEqual(sni["certificate"], {"id": created["id"]})

    async def test_formSnis(self) -> None:
        """
        A form body: one C{snis} value is a one-element list.
        """
        created = await self.ok("POST", "/certificates", 201, data={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "snis": "one.test"})
        self.assertEqual(created["snis"], ["one.test"])

    async def test_badSniLeavesNothing(self) -> None:
        """
        A bad name in C{snis}: 400, and neither certificate nor sni is written.
        """
        body = await self.fails("POST", "/certificates", json={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "snis": ["good.test", "1.2.3.4"]})
        self.assertEqual(body["fields"], {"snis": [None, "must not be an IP"]})
        self.assertEqual((await self.ok("GET", "/certificates"))["data"], [])
        self.assertEqual(await self.names(), [])

    async def test_takenSni(self) -> None:
        """
        A name of another certificate: Kong's message, nothing written.
        """
        first = await self.certificate(snis=["one.test"])
        body = await self.fails("POST", "/certificates", json={
            "cert": TWO.cert_pem, "key": TWO.key_pem, "snis": ["new.test", "one.test"]})
        self.assertEqual(body["fields"], {
            "snis": f"one.test already associated with existing certificate '{first['id']}'"})
        self.assertEqual(len((await self.ok("GET", "/certificates"))["data"]), 1)
        self.assertEqual(await self.names(), ["one.test"])

    async def test_duplicateSni(self) -> None:
        """
        The same name twice: Kong's message.
        """
        body = await self.fails("POST", "/certificates", json={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "snis": ["a.test", "a.test"]})
        self.assertEqual(body["fields"], {"snis": "a.test is duplicated"})

    async def test_validation(self) -> None:
        """
        Bad PEM, a key that does not match, an alternative of the same type:
        400 with Kong's messages.
        """
        body = await self.fails("POST", "/certificates", json={"cert": "x", "key": "y"})
        self.assertEqual(body["code"], 2)
        self.assertTrue(body["fields"]["cert"].startswith("invalid certificate: "))
        self.assertTrue(body["fields"]["key"].startswith("invalid key: "))
        body = await self.fails("POST", "/certificates", json={"cert": ONE.cert_pem, "key": OTHER.key_pem})
        self.assertEqual(body["fields"], {"@entity": ["certificate does not match key"]})
        body = await self.fails("POST", "/certificates", json={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "cert_alt": OTHER.cert_pem, "key_alt": OTHER.key_pem})
        self.assertIn("different type", body["fields"]["@entity"][0])

    async def test_patchReplacesSnis(self) -> None:
        """
        PATCH with C{snis} adds the new names and removes the others;
        without C{snis} it leaves them.
        """
        created = await self.certificate(snis=["a.test", "b.test"])
        patched = await self.ok("PATCH", "/certificates/a.test", json={"snis": ["b.test", "c.test"]})
        self.assertEqual((patched["id"], patched["snis"]), (created["id"], ["b.test", "c.test"]))
        self.assertEqual(await self.names(), ["b.test", "c.test"])
        patched = await self.ok("PATCH", f"/certificates/{created['id']}", json={
            "cert": TWO.cert_pem, "key": TWO.key_pem, "tags": ["ec"]})
        self.assertEqual((patched["cert"], patched["tags"], patched["snis"]),
                         (TWO.cert_pem, ["ec"], ["b.test", "c.test"]))

    async def test_patchBadSniLeavesAll(self) -> None:
        """
        A PATCH with a taken name changes nothing.
        """
        await self.certificate(TWO, snis=["two.test"])
        created = await self.certificate(snis=["one.test"])
        await self.fails("PATCH", "/certificates/one.test", json={"snis": ["two.test"], "tags": ["x"]})
        self.assertEqual(await self.ok("GET", f"/certificates/{created['id']}"), created)

    async def test_put(self) -> None:
        """
        PUT by an unknown sni name creates a certificate with that name;
        PUT again replaces it (snis not given: only the addressed name).
        """
        created = await self.ok("PUT", "/certificates/one.test", json={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "snis": ["x.test"]})
        self.assertEqual(created["snis"], ["one.test", "x.test"])
        replaced = await self.ok("PUT", "/certificates/one.test", json={"cert": TWO.cert_pem, "key": TWO.key_pem})
        self.assertEqual((replaced["id"], replaced["cert"], replaced["snis"]),
                         (created["id"], TWO.cert_pem, ["one.test"]))
        self.assertEqual(await self.names(), ["one.test"])
        by_id = "00000000-0000-4000-8000-0000000000aa"
        put = await self.ok("PUT", f"/certificates/{by_id}", json={"cert": ONE.cert_pem, "key": ONE.key_pem})
        self.assertEqual((put["id"], put["snis"]), (by_id, []))

    async def test_unknownSniName(self) -> None:
        """
        An unknown sni name: 404 C{SNI not found} (GET, PATCH, DELETE); an
        unknown id: 404 Not found, and DELETE 204.
        """
        for method in ("GET", "PATCH", "DELETE"):
            self.assertEqual(await self.fails(method, "/certificates/nope.test", 404, json={}), SNI_NOT_FOUND)
        missing = "/certificates/00000000-0000-4000-8000-0000000000aa"
        self.assertEqual(await self.fails("GET", missing, 404), NOT_FOUND)
        await self.ok("DELETE", missing, 204)

    async def test_deleteCascades(self) -> None:
        """
        Deleting a certificate (by sni name) deletes its snis.
        """
        await self.certificate(snis=["a.test", "b.test"])
        kept = await self.certificate(TWO, snis=["c.test"])
        await self.ok("DELETE", "/certificates/a.test", 204)
        self.assertEqual(await self.names(), ["c.test"])
        self.assertEqual((await self.ok("GET", "/certificates"))["data"], [kept])
        self.assertEqual(self.rows("SELECT count(*) FROM snis"), [(1,)])


class SniEndpointTests(CertificatesTestCase):
    """
    C{/snis} and C{/certificates/{c}/snis}.
    """

    async def test_topLevel(self) -> None:
        """
        POST, GET and PATCH by name, unique names (409), DELETE by name.
        """
        cert = await self.certificate()
        sni = await self.ok("POST", "/snis", 201, json={"name": "a.test", "certificate": {"id": cert["id"]}})
        self.assertEqual(await self.ok("GET", "/snis/a.test"), sni)
        self.assertEqual(await self.ok("GET", f"/snis/{sni['id']}"), sni)
        body = await self.fails("POST", "/snis", 409, json={"name": "a.test", "certificate": {"id": cert["id"]}})
        self.assertEqual((body["code"], body["fields"]), (5, {"name": "a.test"}))
        patched = await self.ok("PATCH", "/snis/a.test", json={"tags": ["t"]})
        self.assertEqual(patched["tags"], ["t"])
        self.assertEqual((await self.ok("GET", f"/certificates/{cert['id']}"))["snis"], ["a.test"])
        await self.ok("DELETE", "/snis/a.test", 204)
        self.assertEqual(await self.names(), [])

    async def test_validation(self) -> None:
        """
        A bad name, a missing certificate, a certificate that does not exist.
        """
        body = await self.fails("POST", "/snis", json={"name": "a.*.test"})
        self.assertEqual(body["fields"], {"name": "wildcard must be leftmost or rightmost character",
                                          "certificate": "required field missing"})
        body = await self.fails("POST", "/snis", json={
            "name": "a.test", "certificate": {"id": "00000000-0000-4000-8000-0000000000aa"}})
        self.assertEqual(body["code"], 4)

    async def test_nested(self) -> None:
        """
        C{/certificates/{c}/snis}: list, create, and the child endpoints,
        which find only the certificate's own snis.
        """
        cert = await self.certificate(snis=["a.test"])
        other = await self.certificate(TWO, snis=["b.test"])
        created = await self.ok("POST", "/certificates/a.test/snis", 201, json={"name": "c.test"})
        self.assertEqual(created["certificate"], {"id": cert["id"]})
        listed = await self.ok("GET", f"/certificates/{cert['id']}/snis")
        self.assertEqual(sorted(s["name"] for s in listed["data"]), ["a.test", "c.test"])
        self.assertEqual(await self.ok("GET", "/certificates/a.test/snis/c.test"), created)
        self.assertEqual(await self.fails("GET", "/certificates/a.test/snis/b.test", 404), NOT_FOUND)
        await self.ok("PATCH", "/certificates/a.test/snis/c.test", json={"tags": ["x"]})
        put = await self.ok("PUT", f"/certificates/{other['id']}/snis/d.test", json={})
        self.assertEqual(put["certificate"], {"id": other["id"]})
        await self.ok("DELETE", "/certificates/a.test/snis/c.test", 204)
        self.assertEqual(await self.names(), ["a.test", "b.test", "d.test"])
        self.assertEqual(await self.fails("GET", "/certificates/nope.test/snis", 404), SNI_NOT_FOUND)

    async def test_aioKongSnis(self) -> None:
        """
        aio-kong's test_snis: snis created at the top level by name with
        tags, then moved between certificates by PATCH /snis/{name}.
        """
        c1, c2 = await self.certificate(), await self.certificate(TWO)
        config = [{"name": "a1.example.com", "certificate": {"id": c1["id"]}, "tags": ["foo"]},
                  {"name": "a2.example.com", "certificate": {"id": c2["id"]}, "tags": ["one", "two"]}]

        async def apply() -> list[dict]:
            out = []
            for entry in config:
                entry = dict(entry)
                name = entry.pop("name")
                if (await self.gw.admin("GET", f"/snis/{name}")).code == 200:
                    out.append(await self.ok("PATCH", f"/snis/{name}", json=entry))
                else:
                    out.append(await self.ok("POST", "/snis", 201, json={"name": name, **entry}))
            return [{k: v for k, v in s.items() if k not in ("id", "created_at", "updated_at")} for s in out]

        self.assertEqual(await apply(), config)
        config[0]["certificate"], config[1]["certificate"] = {"id": c2["id"]}, {"id": c1["id"]}
        self.assertEqual(await apply(), config)
        listed = (await self.ok("GET", "/snis"))["data"]
        self.assertEqual({s["name"]: s["certificate"]["id"] for s in listed},
                         {"a1.example.com": c2["id"], "a2.example.com": c1["id"]})


class CaCertificateEndpointTests(CertificatesTestCase):
    """
    C{/ca_certificates}.
    """

    async def test_crud(self) -> None:
        """
        POST computes the digest; the digest is unique (409); GET, PATCH,
        DELETE by id.
        """
        created = await self.ok("POST", "/ca_certificates", 201, json={"cert": CA.cert_pem, "tags": ["ca"]})
        self.assertEqual(len(created["cert_digest"]), 64)
        body = await self.fails("POST", "/ca_certificates", 409, json={"cert": CA.cert_pem})
        self.assertEqual(body["fields"], {"cert_digest": created["cert_digest"]})
        self.assertEqual(await self.ok("GET", f"/ca_certificates/{created['id']}"), created)
        other = make_ca("another")
        patched = await self.ok("PATCH", f"/ca_certificates/{created['id']}", json={"cert": other.cert_pem})
        self.assertNotEqual(patched["cert_digest"], created["cert_digest"])
        self.assertEqual((await self.ok("GET", "/ca_certificates"))["data"], [patched])
        await self.ok("DELETE", f"/ca_certificates/{created['id']}", 204)
        self.assertEqual((await self.ok("GET", "/ca_certificates"))["data"], [])

    async def test_notCa(self) -> None:
        """
        A leaf certificate is refused with Kong's message.
        """
        body = await self.fails("POST", "/ca_certificates", json={"cert": ONE.cert_pem})
        self.assertEqual(body["fields"], {"@entity": [
            'certificate does not appear to be a CA because it is missing the "CA" basic constraint']})

    async def test_referenced(self) -> None:
        """
        A CA certificate a service lists cannot be deleted (Kong's code 19).
        """
        ca = await self.ok("POST", "/ca_certificates", 201, json={"cert": CA.cert_pem})
        service = await self.ok("POST", "/services", 201, json={
            "url": "https://example.com", "ca_certificates": [ca["id"]], "tls_verify": True})
        body = await self.fails("DELETE", f"/ca_certificates/{ca['id']}")
        self.assertEqual(body, {"code": 19, "name": "referenced by others",
                                "message": f"ca certificate {ca['id']} is still referenced by services"
                                           f" (id = {service['id']})"})


class ServiceAndRouteTlsTests(CertificatesTestCase):
    """
    A service's TLS fields and a route's C{snis}, stored and read back.
    """

    async def test_serviceFields(self) -> None:
        """
        An https service with a client certificate, verification and CA
        certificates; the certificate cannot be deleted while it is used.
        """
        cert = await self.certificate()
        service = await self.ok("POST", "/services", 201, json={
            "name": "s", "url": "https://example.com", "client_certificate": {"id": cert["id"]},
            "tls_verify": True, "tls_verify_depth": 4, "ca_certificates": []})
        self.assertEqual(await self.ok("GET", "/services/s"), service)
        self.assertEqual((service["client_certificate"], service["tls_verify"], service["tls_verify_depth"]),
                         ({"id": cert["id"]}, True, 4))
        body = await self.fails("DELETE", f"/certificates/{cert['id']}")
        self.assertEqual(body["code"], 4)
        await self.ok("PATCH", "/services/s", json={"client_certificate": None})
        await self.ok("DELETE", f"/certificates/{cert['id']}", 204)

    async def test_serviceErrors(self) -> None:
        """
        Kong's messages: bad values, TLS fields on an http service, an
        unknown client certificate.
        """
        body = await self.fails("POST", "/services", json={"url": "https://example.com", "tls_verify_depth": 65})
        self.assertEqual(body["fields"], {"tls_verify_depth": "value should be between 0 and 64"})
        body = await self.fails("POST", "/services", json={"url": "http://example.com", "tls_verify": True})
        self.assertEqual(body["fields"], {"tls_verify": "value must be null", "@entity": [
            "failed conditional validation given value of field 'protocol'"]})
        body = await self.fails("POST", "/services", json={
            "url": "https://example.com", "client_certificate": {"id": "00000000-0000-4000-8000-0000000000aa"}})
        self.assertEqual(body["code"], 4)

    async def test_routeSnis(self) -> None:
        """
        A route's C{snis} with https; refused with http only; the redirect
        status code kept.
        """
        route = await self.ok("POST", "/routes", 201, json={
            "protocols": ["https"], "snis": ["*.example.com"], "paths": ["/"],
            "https_redirect_status_code": 301})
        self.assertEqual((route["snis"], route["https_redirect_status_code"]), (["*.example.com"], 301))
        body = await self.fails("POST", "/routes", json={"protocols": ["http"], "paths": ["/"], "snis": ["a.test"]})
        self.assertEqual(body["fields"], {"snis": "length must be 0", "@entity": [
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"]})



class _NameTakenMeanwhile(MemoryStore):
    """
    A store where an SNI name is taken by another writer between the
    Admin API's check and its write: looking snis up finds nothing.
    """

    def get(self, entity: str, key: str) -> Deferred[dict[str, Any] | None]:
        if entity == "snis":
            return succeed(None)
        return super().get(entity, key)


class SnisTransactionTests(AdminTestCase):
    """
    The certificate and its snis are written in one transaction.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store = _NameTakenMeanwhile()
        self.api = self.make_api()
        self.treq = StubTreq(self.api.resource())

    def test_lateConflictWritesNothing(self) -> None:
        """
        A name taken after the check: 409, and the new certificate is not stored either.
        """
        first = self.ok("POST", "/certificates", 201, json_body={
            "cert": ONE.cert_pem, "key": ONE.key_pem, "snis": ["a.test"]})
        answer = self.call("POST", "/certificates", json_body={
            "cert": TWO.cert_pem, "key": TWO.key_pem, "snis": ["b.test", "a.test"]})
        self.assertEqual(answer.status, 409, answer.raw)
        self.assertEqual(list(self.store.tables["certificates"]), [first["id"]])
        self.assertEqual(sorted(s["name"] for s in self.store.tables["snis"].values()), ["a.test"])
