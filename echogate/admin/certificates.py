"""
The Admin API's endpoints for TLS entities, registered on
L{echogate.admin.api.AdminAPI}'s Klein application by L{register}, as
Kong 3 serves them (C{kong/api/routes/certificates.lua} and the
certificates DAO):

  - C{GET|POST /certificates}, C{GET|PUT|PATCH|DELETE /certificates/{c}},
    C{c} being the certificate's id or one of its SNI names (an unknown
    name: 404 C{{"message": "SNI not found"}}; PUT by an unknown name
    creates a certificate with that name among its snis);
  - C{GET|POST /certificates/{c}/snis} and
    C{GET|PUT|PATCH|DELETE /certificates/{c}/snis/{s}};
  - C{GET|POST /ca_certificates}, C{GET|PUT|PATCH|DELETE
    /ca_certificates/{id}}; deleting a CA certificate that a service
    lists in C{ca_certificates} is refused (400, code 19).

C{/snis} and C{/snis/{id or name}} are served by the generic collection
endpoints.

A certificate is read with C{snis}, the sorted names of its SNI rows. A
write may carry C{snis} (a list of names, or one name): the rows are
created with the certificate in one transaction; a name taken by another
certificate is a schema violation before anything is written. On PATCH
and PUT the names no longer listed are deleted after that transaction
(as Kong does, ignoring a failure there). PATCH without C{snis} leaves
them; PUT without C{snis} removes them (a full replacement).

Reads return the private keys: the Admin API must never be reachable by
anyone who may not hold them.
"""
from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from echogate.admin.paging import PageRequest, query_arguments
from echogate.admin.responses import NOT_FOUND, json_response, no_content
from echogate.entities import writes
from echogate.errors import SchemaViolation
from echogate.schema.fields import is_uuid

CERTIFICATES = "certificates"
SNIS = "snis"
CA_CERTIFICATES = "ca_certificates"

#: Kong's answer for a certificate addressed by an SNI name that does not exist.
SNI_NOT_FOUND = {"message": "SNI not found"}

_log = Logger(namespace="echogate.admin")

_ONE = "/certificates/<key>"
_SNIS = _ONE + "/snis"


class _NoCertificate(Exception):
    """
    The addressed certificate does not exist.

    @ivar by_name: it was addressed by an SNI name.
    """

    def __init__(self, by_name: bool):
        super().__init__(by_name)
        self.by_name = by_name


class _NoSni(_NoCertificate):
    """
    The addressed SNI does not exist or names another certificate: answered
    as an unknown certificate id is.
    """

    def __init__(self) -> None:
        super().__init__(False)


def _missing(request: IRequest, error: _NoCertificate) -> bytes:
    return json_response(request, SNI_NOT_FOUND if error.by_name else NOT_FOUND, 404)


_Endpoint = Callable[..., Awaitable[bytes]]


def _answering_missing(endpoint: _Endpoint) -> _Endpoint:
    """
    C{endpoint}, answering 404 (L{_missing}) when the certificate or the
    SNI it addresses does not exist.
    """

    @functools.wraps(endpoint)
    async def answering(admin: Any, request: IRequest, *args: Any, **kwargs: Any) -> bytes:
        try:
            return await endpoint(admin, request, *args, **kwargs)
        except _NoCertificate as e:
            return _missing(request, e)

    return answering


async def _snis_of(admin: Any, certificate_id: str) -> list[dict[str, Any]]:
    """
    Every SNI row of the certificate.
    """
    found: list[dict[str, Any]] = []
    offset = None
    while True:
        records, offset = await admin._store.page(SNIS, 1000, offset,
                                                  where={"certificate": certificate_id})
        found.extend(records)
        if offset is None:
            return found


async def _with_snis(admin: Any, certificate: dict[str, Any]) -> dict[str, Any]:
    """
    C{certificate} as read: with C{snis}, its names sorted.
    """
    names = sorted(r["name"] for r in await _snis_of(admin, certificate["id"]))
    return {**certificate, "snis": names}


async def _find_certificate(admin: Any, key: str) -> dict[str, Any]:
    """
    The certificate whose id, or one of whose SNI names, is C{key}.

    @raise _NoCertificate: there is none.
    """
    if is_uuid(key):
        record = await admin._store.get(CERTIFICATES, key.lower())
        if record is None:
            raise _NoCertificate(False)
        return dict(record)
    sni = await admin._store.get(SNIS, key)
    if sni is None or sni.get("name") != key:
        raise _NoCertificate(True)
    record = await admin._store.get(CERTIFICATES, sni["certificate"]["id"])
    if record is None:
        raise _NoCertificate(True)
    return dict(record)


def _names_given(fields: dict[str, Any]) -> bool:
    """
    Whether the body carries the C{snis} shorthand; one name given as a
    string becomes a list of it (as Kong's Admin API takes it).
    """
    if isinstance(fields.get("snis"), str):
        fields["snis"] = [fields["snis"]]
    return "snis" in fields


async def _check_free(admin: Any, names: list[str], certificate_id: str) -> None:
    """
    @raise SchemaViolation: a name belongs to another certificate (Kong's
        message).
    """
    for name in names:
        sni = await admin._store.get(SNIS, name)
        if sni is not None and sni.get("name") == name \
                and sni["certificate"]["id"] != certificate_id:
            raise SchemaViolation({SNIS: f"{name} already associated with existing"
                                         f" certificate '{sni['certificate']['id']}'"})


async def _store_certificate(admin: Any, request: IRequest, operation: str,
                             record: dict[str, Any], names: list[str] | None,
                             code: int = 200) -> bytes:
    """
    Write C{record} (C{operation}: C{insert}, C{update} or C{upsert}) and,
    when C{names} is given, the SNI rows that make them the certificate's
    names: new rows in the same transaction, the rows no longer named
    deleted after it.
    """
    current = await _snis_of(admin, record["id"]) if operation != "insert" else []
    operations: list[tuple[str, str, dict[str, Any]]] = [(operation, CERTIFICATES, record)]
    stale: list[dict[str, Any]] = []
    if names is not None:
        await _check_free(admin, names, record["id"])
        have = {r["name"] for r in current}
        for name in names:
            if name in have:
                continue
            sni = writes.prepare_insert(SNIS, {"name": name, "certificate": {"id": record["id"]}},
                                        plugins=admin._plugins, now=admin._now(),
                                        new_id=admin._new_id())
            operations.append(("insert", SNIS, sni))
        stale = [r for r in current if r["name"] not in names]
    stored = (await admin._store.write(operations))[0]
    for row in stale:
        try:
            await admin._store.delete(SNIS, row["id"])
        except Exception:
            # As Kong: the certificate is written; a leftover name is not worth a 4xx.
            _log.failure("Could not delete SNI {name} no longer named by certificate {id}",
                         name=row["name"], id=record["id"])
    await admin._changed()
    return json_response(request, await _with_snis(admin, stored), code)


def _split(record: dict[str, Any], given: bool) -> tuple[dict[str, Any], list[str] | None]:
    """
    C{record} without the C{snis} shorthand, and the names (C{None}: not
    given; null given: none).
    """
    names = record.pop(SNIS, None)
    if not given:
        return record, None
    return record, list(names or [])


async def _referenced_by(admin: Any, ca_id: str) -> dict[str, Any] | None:
    """
    The first service that lists the CA certificate in C{ca_certificates}.
    """
    offset = None
    while True:
        records, offset = await admin._store.page("services", 1000, offset)
        for record in records:
            if ca_id in (record.get("ca_certificates") or ()):
                found: dict[str, Any] = record
                return found
        if offset is None:
            return None


def register(app: Klein) -> None:
    """
    Add the certificate, nested SNI and CA certificate endpoints to
    C{app}, the L{AdminAPI}'s application.
    """

    # -- /certificates ----------------------------------------------------

    @app.route("/certificates", methods=["GET"], endpoint="certificates_list")
    async def list_certificates(admin: Any, request: IRequest) -> bytes:
        paging = PageRequest.from_query(query_arguments(request.uri))
        records, next_offset = await admin._store.page(
            CERTIFICATES, paging.size, paging.offset, tags=paging.tags, tags_any=paging.tags_any)
        body: dict[str, Any] = {"data": [await _with_snis(admin, r) for r in records]}
        if next_offset is not None:
            body["offset"] = next_offset
        body["next"] = paging.next_link("/certificates", next_offset)
        return json_response(request, body)

    @app.route("/certificates", methods=["POST"], endpoint="certificates_create")
    async def create_certificate(admin: Any, request: IRequest) -> bytes:
        fields = admin._fields(CERTIFICATES, request)
        given = _names_given(fields)
        record = writes.prepare_insert(CERTIFICATES, fields, plugins=admin._plugins,
                                       now=admin._now(), new_id=admin._new_id())
        record, names = _split(record, given)
        return await _store_certificate(admin, request, "insert", record, names, 201)

    @app.route(_ONE, methods=["GET"], endpoint="certificates_get")
    @_answering_missing
    async def get_certificate(admin: Any, request: IRequest, key: str) -> bytes:
        record = await _find_certificate(admin, key)
        return json_response(request, await _with_snis(admin, record))

    @app.route(_ONE, methods=["PATCH"], endpoint="certificates_patch")
    @_answering_missing
    async def patch_certificate(admin: Any, request: IRequest, key: str) -> bytes:
        existing = await _find_certificate(admin, key)
        fields = admin._fields(CERTIFICATES, request, existing)
        given = _names_given(fields)
        record = writes.prepare_update(CERTIFICATES, existing, fields,
                                       plugins=admin._plugins, now=admin._now())
        record, names = _split(record, given)
        return await _store_certificate(admin, request, "update", record, names)

    @app.route(_ONE, methods=["PUT"], endpoint="certificates_put")
    async def put_certificate(admin: Any, request: IRequest, key: str) -> bytes:
        name = None
        if is_uuid(key):
            certificate_id = key.lower()
            existing = await admin._store.get(CERTIFICATES, certificate_id)
        else:
            name = key
            try:
                existing = await _find_certificate(admin, key)
                certificate_id = existing["id"]
            except _NoCertificate:
                existing, certificate_id = None, admin._new_id()
        fields = admin._fields(CERTIFICATES, request, existing)
        _names_given(fields)
        names = list(fields.get(SNIS) or [])
        if name is not None and name not in names:
            names.append(name)
        fields[SNIS] = names
        fields["id"] = certificate_id
        record = writes.prepare_replace(CERTIFICATES, fields, existing=existing,
                                        plugins=admin._plugins, now=admin._now(),
                                        new_id=certificate_id)
        record, checked = _split(record, True)
        return await _store_certificate(admin, request, "upsert", record, checked)

    @app.route(_ONE, methods=["DELETE"], endpoint="certificates_delete")
    async def delete_certificate(admin: Any, request: IRequest, key: str) -> bytes:
        try:
            record = await _find_certificate(admin, key)
        except _NoCertificate as e:
            if e.by_name:
                return _missing(request, e)
            return no_content(request)
        deleted: bytes = await admin._delete(request, CERTIFICATES, record["id"])
        return deleted

    # -- /certificates/{c}/snis -------------------------------------------

    async def owned_sni(admin: Any, key: str, sni_key: str) -> dict[str, Any]:
        """
        The SNI C{sni_key} of the certificate C{key}.

        @raise _NoCertificate: there is no such certificate.
        @raise _NoSni: the certificate has no such SNI.
        """
        certificate = await _find_certificate(admin, key)
        sni = await admin._store.get(SNIS, sni_key)
        if sni is None or (sni.get("certificate") or {}).get("id") != certificate["id"]:
            raise _NoSni()
        return dict(sni)

    @app.route(_SNIS, methods=["GET"], endpoint="certificate_snis_list")
    @_answering_missing
    async def list_snis(admin: Any, request: IRequest, key: str) -> bytes:
        certificate = await _find_certificate(admin, key)
        listed: bytes = await admin._list(request, SNIS, f"/certificates/{certificate['id']}/snis",
                                          where={"certificate": certificate["id"]})
        return listed

    @app.route(_SNIS, methods=["POST"], endpoint="certificate_snis_create")
    @_answering_missing
    async def create_sni(admin: Any, request: IRequest, key: str) -> bytes:
        certificate = await _find_certificate(admin, key)
        created: bytes = await admin._create(request, SNIS, {"certificate": {"id": certificate["id"]}})
        return created

    @app.route(_SNIS + "/<sni>", methods=["GET"], endpoint="certificate_sni_get")
    @_answering_missing
    async def get_sni(admin: Any, request: IRequest, key: str, sni: str) -> bytes:
        record = await owned_sni(admin, key, sni)
        return json_response(request, record)

    @app.route(_SNIS + "/<sni>", methods=["PATCH"], endpoint="certificate_sni_patch")
    @_answering_missing
    async def patch_sni(admin: Any, request: IRequest, key: str, sni: str) -> bytes:
        record = await owned_sni(admin, key, sni)
        updated: bytes = await admin._update(request, SNIS, record)
        return updated

    @app.route(_SNIS + "/<sni>", methods=["PUT"], endpoint="certificate_sni_put")
    @_answering_missing
    async def put_sni(admin: Any, request: IRequest, key: str, sni: str) -> bytes:
        certificate = await _find_certificate(admin, key)
        replaced: bytes = await admin._replace(request, SNIS, sni,
                                               {"certificate": {"id": certificate["id"]}})
        return replaced

    @app.route(_SNIS + "/<sni>", methods=["DELETE"], endpoint="certificate_sni_delete")
    @_answering_missing
    async def delete_sni(admin: Any, request: IRequest, key: str, sni: str) -> bytes:
        record = await owned_sni(admin, key, sni)
        deleted: bytes = await admin._delete(request, SNIS, record["id"])
        return deleted

    # -- /ca_certificates -------------------------------------------------

    @app.route("/ca_certificates", methods=["GET"], endpoint="ca_certificates_list")
    async def list_cas(admin: Any, request: IRequest) -> bytes:
        listed: bytes = await admin._list(request, CA_CERTIFICATES, "/ca_certificates")
        return listed

    @app.route("/ca_certificates", methods=["POST"], endpoint="ca_certificates_create")
    async def create_ca(admin: Any, request: IRequest) -> bytes:
        created: bytes = await admin._create(request, CA_CERTIFICATES)
        return created

    @app.route("/ca_certificates/<key>", methods=["GET"], endpoint="ca_certificates_get")
    async def get_ca(admin: Any, request: IRequest, key: str) -> bytes:
        return json_response(request, await admin._find(CA_CERTIFICATES, key))

    @app.route("/ca_certificates/<key>", methods=["PUT"], endpoint="ca_certificates_put")
    async def put_ca(admin: Any, request: IRequest, key: str) -> bytes:
        replaced: bytes = await admin._replace(request, CA_CERTIFICATES, key)
        return replaced

    @app.route("/ca_certificates/<key>", methods=["PATCH"], endpoint="ca_certificates_patch")
    async def patch_ca(admin: Any, request: IRequest, key: str) -> bytes:
        updated: bytes = await admin._update(request, CA_CERTIFICATES,
                                             await admin._find(CA_CERTIFICATES, key))
        return updated

    @app.route("/ca_certificates/<key>", methods=["DELETE"], endpoint="ca_certificates_delete")
    async def delete_ca(admin: Any, request: IRequest, key: str) -> bytes:
        record = await admin._store.get(CA_CERTIFICATES, key)
        if record is None:
            return no_content(request)
        service = await _referenced_by(admin, record["id"])
        if service is not None:
            return json_response(request, {
                "code": 19, "name": "referenced by others",
                "message": f"ca certificate {record['id']} is still referenced by services"
                           f" (id = {service['id']})"}, 400)
        deleted: bytes = await admin._delete(request, CA_CERTIFICATES, record["id"])
        return deleted
