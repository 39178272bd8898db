"""Products, batches, key versions and offline verification.

Every function takes a session, flushes and never commits. Verification never touches the
database: it uses the in-memory :class:`~codegen.tokens.KeyRing` that :class:`KeyRingCache`
reloads at most every ``keyring_refresh_seconds``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from codegen.errors import (
    BatchConflictError,
    BatchNotFoundError,
    NoCodeKeyError,
    ProductConflictError,
    ProductNotFoundError,
)
from codegen.models import URL_FORMS, Batch, Product
from codegen.tokens import (
    SHORT_TOKEN_LEN,
    InvalidToken,
    KeyMaterial,
    KeyRing,
    Verification,
    VerifiedCode,
    gs1_url,
    mint_gs1_serial,
    mint_short,
    normalize_gtin,
    short_url,
    sign_gs1,
    validate_lot,
    verify_code,
    verify_short_batch,
)
from core import services as core_services
from core.config import MAX_BATCH_QUANTITY
from core.db import after_commit
from core.errors import ValidationFailedError
from core.runtime import Runtime

SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")


# --- products -------------------------------------------------------------------------------


def create_product(
    session: Session,
    *,
    tenant_id: int,
    sku: str,
    name: str,
    gtin: str | None = None,
    specification: str = "",
    shelf_life_days: int | None = None,
    image_url: str | None = None,
) -> Product:
    sku = sku.strip()
    if not SKU_RE.match(sku):
        raise ValidationFailedError.field("sku", "1-64 characters of A-Z, a-z, 0-9 and ._/-")
    if not name.strip() or len(name) > 200:
        raise ValidationFailedError.field("name", "1-200 characters")
    if gtin:
        try:
            gtin = normalize_gtin(gtin)
        except ValueError as exc:
            raise ValidationFailedError.field("gtin", str(exc)) from exc
    if shelf_life_days is not None and not 0 < shelf_life_days <= 36500:
        raise ValidationFailedError.field("shelf_life_days", "must be between 1 and 36500")
    if image_url and not re.match(r"^https?://\S+$", image_url):
        raise ValidationFailedError.field("image_url", "must be an http(s) URL")
    same = Product.sku == sku
    if gtin:
        same = same | (Product.gtin == gtin)
    clash = select(Product.sku, Product.gtin).where(Product.tenant_id == tenant_id, same)
    for other_sku, _other_gtin in session.execute(clash):
        field = "sku" if other_sku == sku else "gtin"
        raise ProductConflictError(
            f"another product already has this {field}", errors={field: "already used"}
        )
    product = Product(
        tenant_id=tenant_id,
        sku=sku,
        name=name.strip(),
        gtin=gtin or None,
        specification=specification,
        shelf_life_days=shelf_life_days,
        image_url=image_url,
    )
    session.add(product)
    session.flush()
    return product


def get_product(session: Session, *, tenant_id: int, product_id: int) -> Product | None:
    product = session.get(Product, product_id)
    return product if product is not None and product.tenant_id == tenant_id else None


def get_product_or_raise(session: Session, *, tenant_id: int, product_id: int) -> Product:
    product = get_product(session, tenant_id=tenant_id, product_id=product_id)
    if product is None:
        raise ProductNotFoundError(
            f"no product {product_id} in this tenant", errors={"product_id": "unknown product"}
        )
    return product


def get_product_by_sku_or_raise(session: Session, *, tenant_id: int, sku: str) -> Product:
    stmt = select(Product).where(Product.tenant_id == tenant_id, Product.sku == sku)
    product = session.scalar(stmt)
    if product is None:
        raise ProductNotFoundError(f"no product with SKU {sku!r}", errors={"sku": "unknown"})
    return product


def get_product_by_gtin(session: Session, *, gtin: str) -> Product | None:
    """The oldest product with this GTIN in any tenant (a GS1 Digital Link names no tenant);
    None when no product has it or ``gtin`` is not a valid GTIN-8/12/13/14."""
    try:
        gtin = normalize_gtin(gtin)
    except ValueError:
        return None
    return session.scalar(select(Product).where(Product.gtin == gtin).order_by(Product.id).limit(1))


def list_products(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    sku: str | None = None,
    gtin: str | None = None,
) -> Sequence[Product]:
    stmt = select(Product).where(Product.tenant_id == tenant_id, Product.id > after_id)
    if sku:
        stmt = stmt.where(Product.sku == sku)
    if gtin:
        stmt = stmt.where(Product.gtin == gtin)
    return session.scalars(stmt.order_by(Product.id).limit(limit)).all()


# --- batches --------------------------------------------------------------------------------


def create_batch(
    session: Session,
    *,
    runtime: Runtime,
    tenant_id: int,
    product_id: int,
    lot: str,
    quantity: int,
    url_form: str = "short",
    production_date: dt.date | None = None,
    factory: str = "",
    line: str = "",
) -> Batch:
    """A batch of ``quantity`` codes signed with the tenant's current key: one row, no codes."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValidationFailedError.field("quantity", "must be a whole number")
    if not 1 <= quantity <= MAX_BATCH_QUANTITY:
        raise ValidationFailedError.field(
            "quantity", f"must be between 1 and {MAX_BATCH_QUANTITY:,}"
        )
    if url_form not in URL_FORMS:
        raise ValidationFailedError.field("url_form", f"must be one of {', '.join(URL_FORMS)}")
    try:
        validate_lot(lot)
    except ValueError as exc:
        raise ValidationFailedError.field("lot", str(exc)) from exc
    product = get_product_or_raise(session, tenant_id=tenant_id, product_id=product_id)
    if url_form != "short" and not product.gtin:
        raise ValidationFailedError.field(
            "url_form", "GS1 Digital Link codes need a product with a GTIN"
        )
    duplicate = select(Batch.id).where(
        Batch.tenant_id == tenant_id, Batch.product_id == product_id, Batch.lot == lot
    )
    if session.scalar(duplicate) is not None:
        raise BatchConflictError(
            f"product {product.sku} already has a batch with lot {lot!r}",
            errors={"lot": "already used for this product"},
        )
    key = core_services.get_current_code_key(session, tenant_id=tenant_id)
    if key is None:
        key = core_services.create_code_key(
            session, master_key=runtime.settings.master_key_bytes, tenant_id=tenant_id
        )
        _invalidate_after_commit(session, runtime)
    batch = Batch(
        tenant_id=tenant_id,
        product_id=product_id,
        lot=lot,
        quantity=quantity,
        url_form=url_form,
        production_date=production_date,
        factory=factory,
        line=line,
        key_id=key.id,
        status="active",
    )
    session.add(batch)
    session.flush()
    return batch


def get_batch(session: Session, *, tenant_id: int, batch_id: int) -> Batch | None:
    batch = session.get(Batch, batch_id)
    return batch if batch is not None and batch.tenant_id == tenant_id else None


def get_batch_or_raise(session: Session, *, tenant_id: int, batch_id: int) -> Batch:
    batch = get_batch(session, tenant_id=tenant_id, batch_id=batch_id)
    if batch is None:
        raise BatchNotFoundError(
            f"no batch {batch_id} in this tenant", errors={"batch_id": "unknown batch"}
        )
    return batch


def list_batches(
    session: Session,
    *,
    tenant_id: int,
    after_id: int = 0,
    limit: int = 50,
    product_id: int | None = None,
    lot: str | None = None,
) -> Sequence[Batch]:
    stmt = select(Batch).where(Batch.tenant_id == tenant_id, Batch.id > after_id)
    if product_id is not None:
        stmt = stmt.where(Batch.product_id == product_id)
    if lot:
        stmt = stmt.where(Batch.lot == lot)
    return session.scalars(stmt.order_by(Batch.id).limit(limit)).all()


# --- keys -----------------------------------------------------------------------------------


def rotate_code_key(session: Session, *, runtime: Runtime, tenant_id: int) -> int:
    """A new current key version for new batches; existing batches keep theirs."""
    key = core_services.create_code_key(
        session, master_key=runtime.settings.master_key_bytes, tenant_id=tenant_id
    )
    _invalidate_after_commit(session, runtime)
    return key.id


def retire_code_key(
    session: Session, *, runtime: Runtime, tenant_id: int, key_id: int, reason: str
) -> int:
    """Retire a (compromised) key: its codes stop verifying and its batches are revoked.

    Returns how many batches were revoked. A new current key is made if the retired key was
    the current one, so the tenant can go on issuing.
    """
    was_current = core_services.get_current_code_key(session, tenant_id=tenant_id)
    core_services.retire_code_key(session, tenant_id=tenant_id, key_id=key_id, reason=reason)
    revoked_ids = session.scalars(
        update(Batch)
        .where(Batch.tenant_id == tenant_id, Batch.key_id == key_id, Batch.status == "active")
        .values(status="revoked", revoked_reason=f"key {key_id} retired: {reason}"[:200])
        .returning(Batch.id)
    ).all()
    if was_current is not None and was_current.id == key_id:
        core_services.create_code_key(
            session, master_key=runtime.settings.master_key_bytes, tenant_id=tenant_id
        )
    _invalidate_after_commit(session, runtime)
    after_commit(session, lambda: forget_code_contexts(runtime, revoked_ids))
    return len(revoked_ids)


class KeyRingCache:
    """The unwrapped key ring of one process, reloaded at most every ``refresh`` seconds.

    Verification reads only this, so a flood of forged codes never reaches the database. A
    key retired by another process stops verifying here within ``refresh`` seconds.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._seen_version: bytes | None = None
        self._watcher: threading.Thread | None = None

    def ring(self) -> KeyRing:
        ring = self._ring
        refresh = self._runtime.settings.keyring_refresh_seconds
        if ring is not None and time.monotonic() - self._loaded_at < refresh:
            return ring
        with self._lock:
            if self._ring is None or time.monotonic() - self._loaded_at >= refresh:
                self._ring = self._load()
                self._loaded_at = time.monotonic()
            return self._ring

    def invalidate(self) -> None:
        with self._lock:
            self._ring = None

    def watch(self) -> None:
        """With Redis, follow the key-ring version other processes bump when keys change, from a
        background thread (once a second): new and retired keys are seen here within a second,
        and no scan ever reloads the ring itself."""
        if self._runtime.redis is None or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._follow, name="yima-keyring", daemon=True)
        self._watcher.start()

    def _follow(self) -> None:
        while True:
            try:
                version = self._runtime.redis.get(KEYRING_VERSION_KEY)
                if version != self._seen_version:
                    self._seen_version = version
                    self.invalidate()
            except Exception:  # Redis down: the 30-s refresh still holds
                pass
            time.sleep(1.0)

    def reload_if_older_than(self, seconds: float) -> bool:
        """Reload now unless the ring is fresher than ``seconds``; True when it reloaded.

        A code naming a key this process has not seen may be from a key made a moment ago in
        another process; at most one reload a second keeps forged key ids from costing more.
        """
        with self._lock:
            if self._ring is not None and time.monotonic() - self._loaded_at < seconds:
                return False
            self._ring = self._load()
            self._loaded_at = time.monotonic()
            return True

    def _load(self) -> KeyRing:
        with self._runtime.db.read_only() as session:
            secrets = core_services.load_key_secrets(
                session, master_key=self._runtime.settings.master_key_bytes
            )
        return KeyRing(
            KeyMaterial(
                key_id=s.key_id,
                tenant_id=s.tenant_id,
                root_secret=s.secret,
                retired=s.status == "retired",
            )
            for s in secrets
        )


KEYRING_VERSION_KEY = "yima:keyring:version"


def _invalidate_after_commit(session: Session, runtime: Runtime) -> None:
    # Now, so this transaction's own reads miss the stale ring, and after the commit, so a ring
    # loaded meanwhile (without the uncommitted key) is not kept; other processes learn it from
    # the version in Redis.
    key_ring_cache(runtime).invalidate()

    def changed() -> None:
        key_ring_cache(runtime).invalidate()
        if runtime.redis is not None:
            with contextlib.suppress(Exception):
                runtime.redis.incr(KEYRING_VERSION_KEY)

    after_commit(session, changed)


_caches: dict[int, KeyRingCache] = {}
_caches_lock = threading.Lock()


def key_ring_cache(runtime: Runtime) -> KeyRingCache:
    with _caches_lock:
        cache = _caches.get(runtime.key)
        if cache is None or cache._runtime is not runtime:
            cache = _caches[runtime.key] = KeyRingCache(runtime)
            cache.watch()
        return cache


def key_material(runtime: Runtime, key_id: int, session: Session | None = None) -> KeyMaterial:
    """The working keys of ``key_id``; ``session`` also sees a key it has not committed yet."""
    material = key_ring_cache(runtime).ring().get(key_id)
    if material is None and session is not None:
        secret = core_services.get_key_secret(
            session, master_key=runtime.settings.master_key_bytes, key_id=key_id
        )
        if secret is not None:
            material = KeyMaterial(
                key_id=secret.key_id,
                tenant_id=secret.tenant_id,
                root_secret=secret.secret,
                retired=secret.status == "retired",
            )
    if material is None:
        key_ring_cache(runtime).invalidate()
        material = key_ring_cache(runtime).ring().get(key_id)
    if material is None:
        raise NoCodeKeyError(f"key {key_id} is not in the key ring")
    return material


UNKNOWN_KEY_RELOAD_SECONDS = 1.0


def verify(runtime: Runtime, text: str) -> Verification:
    """Verify a code (token, short URL or GS1 Digital Link URL) from the code alone."""
    cache = key_ring_cache(runtime)
    result = verify_code(cache.ring(), text)
    if (
        isinstance(result, InvalidToken)
        and result.reason == "unknown_key"
        and runtime.redis is None  # with Redis, the watcher already knows of every new key
        and cache.reload_if_older_than(UNKNOWN_KEY_RELOAD_SECONDS)
    ):
        result = verify_code(cache.ring(), text)
    return result


_SHORT_URL = re.compile(r"^(?i:https?)://[^/?#]+/[cC]/([A-Za-z0-9]{29})$")


def verify_many(runtime: Runtime, texts: Sequence[str]) -> list[Verification]:
    """:func:`verify` for many codes, in input order; bare short tokens and short URLs are
    verified vectorised (packing lines upload tens of thousands at a time)."""
    ring = key_ring_cache(runtime).ring()
    tokens: list[str] = []
    where: list[int] = []
    for i, text in enumerate(texts):
        if len(text) == SHORT_TOKEN_LEN and "/" not in text:
            tokens.append(text.upper())
            where.append(i)
        elif (match := _SHORT_URL.match(text)) is not None:
            tokens.append(match.group(1).upper())
            where.append(i)
    results: list[Verification | None] = [None] * len(texts)
    if tokens:
        for i, result in zip(where, verify_short_batch(ring, tokens), strict=True):
            if not (isinstance(result, InvalidToken) and result.reason == "unknown_key"):
                results[i] = result  # an unknown key is asked again below (a new key?)
    for i, text in enumerate(texts):
        if results[i] is None:
            results[i] = verify(runtime, text)
    return [r for r in results if r is not None]


# --- single codes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCode:
    serial: int
    code: str
    url: str


def code_for_serial(
    runtime: Runtime,
    *,
    batch: Batch,
    gtin: str | None,
    serial: int,
    host: str,
    session: Session | None = None,
) -> IssuedCode:
    """The code and URL printed for one serial of ``batch``."""
    key = key_material(runtime, batch.key_id, session)
    if batch.url_form == "short":
        token = mint_short(key, batch.id, serial)
        return IssuedCode(serial, token, short_url(host, token))
    assert gtin is not None
    code = mint_gs1_serial(key, batch.id, serial, gtin, batch.lot)
    sig = sign_gs1(key, gtin, batch.lot, code) if batch.url_form == "gs1-digsig" else None
    return IssuedCode(serial, code, gs1_url(host, gtin, batch.lot, code, sig))


__all__ = [
    "InvalidToken",
    "VerifiedCode",
]


def published_keys(runtime: Runtime) -> dict[str, object]:
    """The Ed25519 public keys of every key version, as a JWK set plus GS1 details.

    Anyone holding this document verifies a ``gs1-digsig`` code (AI 8030) with no call to
    Yima: the key id is the first 15 bits of the serial's base64url value, the signed message is
    ``(01)<gtin>(10)<lot>(21)<serial>`` in UTF-8, the signature the base64url value of AI 8030.
    """
    import base64

    from sqlalchemy import select as _select

    from core.models import Tenant

    ring = key_ring_cache(runtime).ring()
    with runtime.db.read_only() as session:
        slugs = dict(session.execute(_select(Tenant.id, Tenant.slug)).all())
    keys = []
    for material in sorted(ring.values(), key=lambda m: m.key_id):
        x = base64.urlsafe_b64encode(material.public_key_bytes()).rstrip(b"=").decode()
        keys.append(
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": str(material.key_id),
                "x": x,
                "tenant": slugs.get(material.tenant_id),
                "status": "retired" if material.retired else "active",
            }
        )
    return {
        "keys": keys,
        "signed_message": "(01){gtin}(10){lot}(21){serial}",
        "signature": "AI 8030: base64url (no padding) of the 64-byte Ed25519 signature",
        "key_id": "first 15 bits of the base64url-decoded serial (AI 21)",
    }


# --- code context (the scan path's read of batch and product) ---------------------------------


@dataclass(frozen=True)
class CodeContext:
    """What a scan needs of a code's batch and product; cached, so a re-scan reads no row."""

    tenant_id: int
    batch_id: int
    batch_status: str
    quantity: int
    lot: str
    production_date: str | None
    factory: str
    product_name: str
    sku: str
    gtin: str | None
    specification: str
    image_url: str | None
    shelf_life_days: int | None
    timezone: str = "Asia/Shanghai"
    brand: str = ""  # the tenant's slug


CONTEXT_LOCAL_TTL = 10.0  # seconds a process trusts its own copy
CONTEXT_REDIS_TTL = 300  # seconds Redis keeps a shared copy
_contexts: dict[tuple[int, int], tuple[float, CodeContext]] = {}
_contexts_lock = threading.Lock()


def _context_key(batch_id: int) -> str:
    return f"yima:batch-context:{batch_id}"


def load_code_context(runtime: Runtime, session: Session, batch_id: int) -> CodeContext | None:
    """The batch and product of a code: process memory, else Redis, else one database read."""
    import json

    local_key = (runtime.key, batch_id)
    hit = _contexts.get(local_key)
    if hit is not None and time.monotonic() - hit[0] < CONTEXT_LOCAL_TTL:
        return hit[1]
    redis = runtime.redis
    context: CodeContext | None = None
    if redis is not None:
        try:
            raw = redis.get(_context_key(batch_id))
            if raw:
                context = CodeContext(**json.loads(raw))
        except Exception:  # Redis only speeds things up; the database answers without it
            redis = None
    if context is None:
        from core.models import Tenant

        row = session.execute(
            select(Batch, Product, Tenant.timezone, Tenant.slug)
            .join(Product, Product.id == Batch.product_id)
            .join(Tenant, Tenant.id == Batch.tenant_id)
            .where(Batch.id == batch_id)
        ).first()
        if row is None:
            return None
        batch, product, timezone, brand = row
        context = CodeContext(
            tenant_id=batch.tenant_id,
            batch_id=batch.id,
            batch_status=batch.status,
            quantity=batch.quantity,
            lot=batch.lot,
            production_date=batch.production_date.isoformat() if batch.production_date else None,
            factory=batch.factory,
            product_name=product.name,
            sku=product.sku,
            gtin=product.gtin,
            specification=product.specification,
            image_url=product.image_url,
            shelf_life_days=product.shelf_life_days,
            timezone=timezone,
            brand=brand,
        )
        if redis is not None:
            with contextlib.suppress(Exception):  # a cache write that fails costs nothing
                redis.set(
                    _context_key(batch_id), json.dumps(context.__dict__), ex=CONTEXT_REDIS_TTL
                )
    with _contexts_lock:
        _contexts[local_key] = (time.monotonic(), context)
    return context


def forget_code_contexts(runtime: Runtime, batch_ids: Sequence[int]) -> None:
    """Drop cached contexts after a batch changed (revoked, say)."""
    with _contexts_lock:
        for batch_id in batch_ids:
            _contexts.pop((runtime.key, batch_id), None)
    if runtime.redis is not None and batch_ids:
        with contextlib.suppress(Exception):  # the copy expires on its own within minutes
            runtime.redis.delete(*[_context_key(b) for b in batch_ids])
