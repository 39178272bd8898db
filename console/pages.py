"""The console's pages: sign-in (with the TOTP step), the shell and its overview, users &
roles, my account (password, two-step verification) and the audit log.

Server-rendered in the reader's language (Chinese by default; English by ``?lang=en``, the
``yima_lang`` cookie or Accept-Language). Forms post to these pages with the session's CSRF
token; ``static/console.js`` (no inline script: the CSP allows ``script-src 'self'`` only)
calls the same ``/api/v1`` as integrations with the session cookie and the token in the
``X-CSRF-Token`` header. Links are built with ``url_for`` so the console works under a prefix
(``/console`` in ``yima serve``).

A page that needs a signed-in user sends a visitor without one to sign in (and back); a page
the role may not see answers 403, an object of another brand 404.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import qrcode
import qrcode.image.svg
from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

import traceability
from console.texts import TEXTS
from core import accounts, passwords
from core import services as core_services
from core.auth import (
    CSRF_FIELD,
    PERMISSIONS,
    SESSION_COOKIE,
    check_csrf,
    csrf_token,
    signed_in_user,
)
from core.errors import (
    ConflictError,
    CsrfTokenInvalidError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
    YimaError,
)
from core.models import ROLES, Tenant, User
from core.services import SLUG_RE
from core.web import app_runtime, client_ip, db_session, page_lang, remember_lang

pages = Blueprint("pages", __name__)

API_PREFIX = "/api/v1"
PRE_COOKIE = "yima_console_pre"  # the sign-in form's CSRF secret (no session yet)
STATIC = Path(__file__).parent / "static"
AUDIT_PAGE = 50
USERS_PAGE = 100


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    text: str
    permission: str | None  # None: every signed-in user


# The shell's navigation, in order: only pages that exist, shown to the roles that may open
# them. A new section adds its page and its line here.
NAV: list[NavItem] = [
    NavItem("pages.overview", "nav_overview", None),
    NavItem("pages.users", "nav_users", "users"),
    NavItem("pages.audit", "nav_audit", "audit"),
    NavItem("pages.account", "nav_account", None),
]


class SignInRequired(Exception):
    """No live session: a page sends the visitor to sign in."""


# --- helpers -------------------------------------------------------------------------------------


@functools.cache
def _version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a console static file, versioned by its content (cached for a year)."""
    return url_for("static", filename=name, v=_version(name))


def _lang_switch(lang: str) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    args.append(("lang", "zh" if lang == "en" else "en"))
    return request.script_root + request.path + "?" + urlencode(args)


def _safe_next(value: str | None) -> str | None:
    """A path of this app to return to after signing in, or None."""
    if not value or len(value) > 512 or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        return None
    parts = urlsplit(value)
    return None if parts.scheme or parts.netloc else value


def _here() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def _set_session_cookie(response: Response, token: str, *, max_age: int | None) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path=request.script_root or "/",
    )


def _clear_session_cookie(response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=request.script_root or "/",
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )


def page_user(permission: str | None = None) -> accounts.SignedInUser:
    who = signed_in_user()
    if who is None or who.stage != "active":
        raise SignInRequired()
    if permission is not None and permission not in PERMISSIONS.get(who.role, frozenset()):
        raise PermissionDeniedError(f"the role {who.role!r} may not {permission}")
    return who


def may(who: accounts.SignedInUser, permission: str | None) -> bool:
    """The user's role holds ``permission`` (None: any signed-in user)."""
    return permission is None or permission in PERMISSIONS.get(who.role, frozenset())


def render_page(
    template: str,
    *,
    who: accounts.SignedInUser | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **ctx: Any,
) -> Response:
    lang = page_lang()
    texts = TEXTS[lang]
    tenant = db_session().get(Tenant, who.tenant_id) if who is not None else None
    response = make_response(
        render_template(
            template,
            t=texts,
            lang=lang,
            who=who,
            tenant=tenant,
            nav=[item for item in NAV if who is not None and may(who, item.permission)],
            active=request.endpoint,
            csrf=csrf_token() if who is not None else None,
            csrf_field=CSRF_FIELD,
            css=static_url("console.css"),
            script=static_url("console.js"),
            api=request.script_root + API_PREFIX,
            lang_switch=_lang_switch(lang),
            role_name=(lambda role: texts.get(f"role_{role}", role)),
            **ctx,
        ),
        status,
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return remember_lang(response, lang)


def redirect_to(endpoint: str, **args: Any) -> Response:
    return make_response(redirect(url_for(endpoint, **args), 303))


# --- errors of the pages --------------------------------------------------------------------------


@pages.before_request
def _refuse_nul_bytes() -> None:
    # PostgreSQL text cannot hold NUL: a form field with one is refused before anything reads it.
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        for name, value in request.form.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise ValidationFailedError.field(name.replace("\x00", ""), "contains a NUL byte")


@pages.errorhandler(SignInRequired)
def sign_in_first(_exc: SignInRequired) -> Response:
    args: dict[str, str] = {}
    if request.method == "GET":
        args["next"] = _here()
    waiting = signed_in_user()
    if waiting is not None and waiting.stage == "totp":  # the password is right: the code next
        return redirect_to("pages.sign_in_code", **args)
    if request.cookies.get(SESSION_COOKIE):
        args["ended"] = "1"
    response = redirect_to("pages.sign_in", **args)
    if request.cookies.get(SESSION_COOKIE):
        _clear_session_cookie(response)
    return response


@pages.errorhandler(YimaError)
def page_error(exc: YimaError) -> Response:
    who = signed_in_user()
    who = who if who is not None and who.stage == "active" else None
    texts = TEXTS[page_lang()]
    if isinstance(exc, CsrfTokenInvalidError):
        title, message = texts["error_title"], texts["err_form_expired"]
    elif isinstance(exc, PermissionDeniedError):
        role = texts.get(f"role_{who.role}", who.role) if who is not None else ""
        title, message = texts["forbidden_title"], texts["forbidden"].format(role=role)
    elif isinstance(exc, NotFoundError):
        title, message = texts["not_found_title"], texts["not_found"]
    else:
        title, message = texts["error_title"], exc.detail
    return render_page("error.html", who=who, status=exc.status, title=title, message=message)


# --- sign-in ------------------------------------------------------------------------------------


def _pre_token(secret: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"yima/sign-in/" + secret.encode(), hashlib.sha256).hexdigest()


def _sign_in_page(
    *, status: int = 200, errors: dict[str, str] | None = None, message: str = "", **form: Any
) -> Response:
    secret = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    headers = {}
    if status == 429 and form.get("retry_after"):
        headers["Retry-After"] = str(form.pop("retry_after"))
    response = render_page(
        "sign_in.html",
        who=None,
        status=status,
        headers=headers,
        errors=errors or {},
        message=message,
        pre_token=_pre_token(secret),
        next=_safe_next(request.values.get("next")) or "",
        ended=request.args.get("ended") == "1",
        signed_out=request.args.get("signed_out") == "1",
        brand=form.get("brand", request.args.get("brand", "")),
        email=form.get("email", ""),
    )
    response.set_cookie(
        PRE_COOKIE,
        secret,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        path=request.script_root or "/",
    )
    return response


def _check_pre_token() -> None:
    secret = request.cookies.get(PRE_COOKIE)
    sent = request.form.get(CSRF_FIELD, "")
    if not secret or not hmac.compare_digest(_pre_token(secret).encode(), sent.encode()):
        raise CsrfTokenInvalidError("the sign-in form has expired")


def _after_sign_in(outcome: accounts.SignInOutcome, next_path: str | None) -> Response:
    settings = app_runtime().settings
    assert outcome.token is not None
    if outcome.status == "totp":
        response = redirect_to("pages.sign_in_code", **({"next": next_path} if next_path else {}))
        _set_session_cookie(response, outcome.token, max_age=accounts.SECOND_FACTOR_MINUTES * 60)
        return response
    target = request.script_root + next_path if next_path else url_for("pages.overview")
    response = make_response(redirect(target, 303))
    _set_session_cookie(response, outcome.token, max_age=settings.console_session_hours * 3600)
    return response


def _locked_page(until: dt.datetime | None, **form: Any) -> Response:
    texts = TEXTS[page_lang()]
    seconds = max(
        1, int(((until or dt.datetime.now(dt.UTC)) - dt.datetime.now(dt.UTC)).total_seconds())
    )
    message = texts["err_locked"].format(minutes=math.ceil(seconds / 60))
    return _sign_in_page(status=429, message=message, retry_after=seconds, **form)


@pages.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response:
    if request.method == "GET":
        who = signed_in_user()
        if who is not None and who.stage == "active":
            next_path = _safe_next(request.args.get("next"))
            if next_path:
                return make_response(redirect(request.script_root + next_path, 303))
            return redirect_to("pages.overview")
        return _sign_in_page()
    _check_pre_token()
    texts = TEXTS[page_lang()]
    brand = request.form.get("brand", "").strip().lower()
    raw_email = request.form.get("email", "")
    password = request.form.get("password", "")
    errors: dict[str, str] = {}
    if not SLUG_RE.match(brand):
        errors["brand"] = texts["err_brand"]
    try:
        email = accounts.normalize_email(raw_email)
    except ValidationFailedError:
        email, errors["email"] = raw_email.strip(), texts["err_email"]
    if not password or len(password) > 256:
        errors["password"] = texts["err_password_required"]
    if errors:
        return _sign_in_page(status=422, errors=errors, brand=brand[:40], email=email[:254])
    runtime = app_runtime()
    # Its own unit of work: a failure is counted and committed although the answer is a refusal.
    with runtime.db.unit_of_work() as session:
        outcome = accounts.attempt_sign_in(
            session,
            settings=runtime.settings,
            brand=brand,
            email=email,
            password=password,
            ip=client_ip(),
            user_agent=request.user_agent.string,
        )
    if outcome.status == "locked":
        return _locked_page(outcome.locked_until, brand=brand, email=email)
    if outcome.status == "failed":
        return _sign_in_page(status=401, message=texts["err_sign_in"], brand=brand, email=email)
    return _after_sign_in(outcome, _safe_next(request.form.get("next")))


@pages.route("/sign-in/code", methods=["GET", "POST"])
def sign_in_code() -> Response:
    texts = TEXTS[page_lang()]
    next_path = _safe_next(request.values.get("next"))
    if request.method == "GET":
        who = signed_in_user()
        if who is None or who.stage != "totp":
            return redirect_to("pages.sign_in")
        return render_page(
            "sign_in_code.html", who=None, csrf_pending=csrf_token(), next=next_path or "", error=""
        )
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return redirect_to("pages.sign_in")
    check_csrf()
    code = request.form.get("code", "").strip().replace(" ", "")
    if len(code) != accounts.TOTP_DIGITS or not code.isdigit():
        return render_page(
            "sign_in_code.html",
            who=None,
            status=422,
            csrf_pending=csrf_token(),
            next=next_path or "",
            error=texts["err_code"],
        )
    runtime = app_runtime()
    with runtime.db.unit_of_work() as session:
        outcome = accounts.complete_second_factor(
            session,
            settings=runtime.settings,
            token=token,
            code=code,
            ip=client_ip(),
            user_agent=request.user_agent.string,
        )
    if outcome.status == "signed_in":
        return _after_sign_in(outcome, next_path)
    if outcome.status == "locked":
        response = _locked_page(outcome.locked_until)
        _clear_session_cookie(response)
        return response
    if outcome.user_id is None:  # the waiting session is gone: start again
        response = _sign_in_page(status=401, message=texts["err_totp_expired"])
        _clear_session_cookie(response)
        return response
    return render_page(
        "sign_in_code.html",
        who=None,
        status=401,
        csrf_pending=csrf_token(),
        next=next_path or "",
        error=texts["err_totp"],
    )


@pages.post("/sign-out")
def sign_out() -> Response:
    who = signed_in_user()
    if who is not None:
        check_csrf()
        accounts.sign_out(db_session(), who=who, ip=client_ip())
    response = redirect_to("pages.sign_in", signed_out="1")
    _clear_session_cookie(response)
    return response


# --- overview -------------------------------------------------------------------------------------


@pages.get("/")
def overview() -> Response:
    who = page_user()
    user = db_session().get(User, who.user_id)
    permissions = sorted(PERMISSIONS.get(who.role, frozenset()))
    if who.role == "distributor":
        permissions = ["distributor"]
    return render_page(
        "overview.html",
        who=who,
        user=user,
        permissions=permissions,
        last_sign_in=_local(user.last_sign_in_at, who.tenant_id) if user is not None else None,
    )


def _tz(tenant_id: int) -> ZoneInfo:
    return ZoneInfo(core_services.tenant_timezone(db_session(), tenant_id))


def _local(moment: dt.datetime | None, tenant_id: int) -> str:
    if moment is None:
        return ""
    return moment.astimezone(_tz(tenant_id)).strftime("%Y-%m-%d %H:%M")


# --- users & roles -------------------------------------------------------------------------------


def _users_page(
    who: accounts.SignedInUser,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str = "",
    error: str = "",
    secret: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    session = db_session()
    after = request.args.get("after", "")
    after_id = int(after) if after.isdigit() and len(after) < 10 else 0
    users = list(
        accounts.list_users(session, tenant_id=who.tenant_id, after_id=after_id, limit=USERS_PAGE)
    )
    return render_page(
        "users.html",
        who=who,
        status=status,
        users=users,
        roles=ROLES,
        errors=errors or {},
        message=message,
        error=error,
        secret=secret,
        form=form or {},
        more=users[-1].id if len(users) == USERS_PAGE else None,
        local=lambda moment: _local(moment, who.tenant_id),
    )


def _user_of_form(who: accounts.SignedInUser, user_id: int) -> User:
    return accounts.get_user_or_raise(db_session(), tenant_id=who.tenant_id, user_id=user_id)


def _role_fields(
    who: accounts.SignedInUser, texts: dict[str, str]
) -> tuple[str, int | None, dict[str, str]]:
    """The form's role and distributor, checked (errors by field in the reader's language)."""
    errors: dict[str, str] = {}
    role = request.form.get("role", "")
    if role not in ROLES:
        errors["role"] = texts["err_role"]
    raw = request.form.get("distributor_id", "").strip()
    distributor_id = int(raw) if raw.isdigit() and len(raw) < 10 and int(raw) > 0 else None
    if role == "distributor" and (
        distributor_id is None
        or traceability.get_distributor(
            db_session(), tenant_id=who.tenant_id, distributor_id=distributor_id
        )
        is None
    ):
        errors["distributor_id"] = texts["err_distributor"]
    return role, (distributor_id if role == "distributor" else None), errors


def _conflict_text(exc: ConflictError, texts: dict[str, str]) -> str:
    if "email" in exc.errors:
        return texts["err_email_taken"]
    if "role" in exc.errors:
        return texts["err_last_admin"]
    if "disabled" in exc.errors:
        return texts["err_self_disable"]
    return exc.detail


@pages.get("/users")
def users() -> Response:
    who = page_user("users")
    texts = TEXTS[page_lang()]
    done = request.args.get("done", "")
    message = ""
    raw = request.args.get("user", "")
    if done in ("role_changed", "user_disabled", "user_enabled", "user_created") and raw.isdigit():
        target = accounts.get_user(db_session(), tenant_id=who.tenant_id, user_id=int(raw[:10]))
        if target is not None:
            message = texts[done].format(email=target.email)
    return _users_page(who, message=message)


@pages.post("/users")
def create_user() -> Response:
    who = page_user("users")
    check_csrf()
    texts = TEXTS[page_lang()]
    form = {k: request.form.get(k, "")[:300] for k in ("email", "name", "role", "distributor_id")}
    role, distributor_id, errors = _role_fields(who, texts)
    try:
        email = accounts.normalize_email(request.form.get("email", ""))
    except ValidationFailedError:
        email, errors["email"] = "", texts["err_email"]
    name = request.form.get("name", "").strip()
    if len(name) > 200:
        errors["name"] = texts["err_name"]
    password = request.form.get("password", "")
    if password:
        try:
            passwords.check_new_password(password, email=email)
        except ValueError:
            errors["password"] = texts["err_password"]
    if errors:
        return _users_page(who, status=422, errors=errors, form=form)
    generated = "" if password else accounts.temporary_password()
    session = db_session()
    try:
        user = core_services.create_user(
            session,
            tenant_id=who.tenant_id,
            email=email,
            role=role,
            password=password or generated,
            name=name,
            distributor_id=distributor_id,
        )
    except ConflictError as exc:
        return _users_page(who, status=409, errors={"email": _conflict_text(exc, texts)}, form=form)
    core_services.record_audit(
        session,
        tenant_id=who.tenant_id,
        actor=accounts.user_actor(who.user_id, who.email),
        action="user.create",
        target_type="user",
        target_id=user.id,
        detail={"email": user.email, "role": role, "distributor_id": distributor_id},
        ip=client_ip(),
    )
    if generated:
        return _users_page(
            who,
            message=texts["user_created"].format(email=user.email),
            secret=texts["temporary_password"].format(email=user.email) + "\n" + generated,
        )
    return redirect_to("pages.users", done="user_created", user=user.id)


@pages.post("/users/<id:user_id>/role")
def change_role(user_id: int) -> Response:
    who = page_user("users")
    check_csrf()
    texts = TEXTS[page_lang()]
    target = _user_of_form(who, user_id)
    role, distributor_id, errors = _role_fields(who, texts)
    if errors:
        return _users_page(who, status=422, error=next(iter(errors.values())))
    try:
        accounts.change_role(
            db_session(),
            tenant_id=who.tenant_id,
            user_id=target.id,
            role=role,
            distributor_id=distributor_id,
            actor=accounts.user_actor(who.user_id, who.email),
            ip=client_ip(),
        )
    except ConflictError as exc:
        return _users_page(who, status=409, error=_conflict_text(exc, texts))
    if target.id == who.user_id:
        return redirect_to("pages.sign_in")  # one's own sessions ended with the old role
    return redirect_to("pages.users", done="role_changed", user=target.id)


@pages.post("/users/<id:user_id>/password")
def reset_password(user_id: int) -> Response:
    who = page_user("users")
    check_csrf()
    texts = TEXTS[page_lang()]
    target = _user_of_form(who, user_id)
    password = accounts.temporary_password()
    accounts.set_password(
        db_session(),
        user=target,
        password=password,
        actor=accounts.user_actor(who.user_id, who.email),
        action="user.password_reset",
        ip=client_ip(),
    )
    if target.id == who.user_id:
        return redirect_to("pages.sign_in")
    return _users_page(
        who,
        message=texts["password_reset"].format(email=target.email),
        secret=texts["temporary_password"].format(email=target.email) + "\n" + password,
    )


@pages.post("/users/<id:user_id>/disable")
def disable_user(user_id: int) -> Response:
    return _set_disabled(user_id, disabled=True)


@pages.post("/users/<id:user_id>/enable")
def enable_user(user_id: int) -> Response:
    return _set_disabled(user_id, disabled=False)


def _set_disabled(user_id: int, *, disabled: bool) -> Response:
    who = page_user("users")
    check_csrf()
    texts = TEXTS[page_lang()]
    target = _user_of_form(who, user_id)
    try:
        accounts.set_disabled(
            db_session(),
            tenant_id=who.tenant_id,
            user_id=target.id,
            disabled=disabled,
            actor=accounts.user_actor(who.user_id, who.email),
            by_user_id=who.user_id,
            ip=client_ip(),
        )
    except ConflictError as exc:
        return _users_page(who, status=409, error=_conflict_text(exc, texts))
    done = "user_disabled" if disabled else "user_enabled"
    return redirect_to("pages.users", done=done, user=target.id)


# --- my account ------------------------------------------------------------------------------


def _qr_data_uri(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    svg: bytes = image.to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def _account_page(
    who: accounts.SignedInUser,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str = "",
) -> Response:
    session = db_session()
    user = session.get(User, who.user_id)
    assert user is not None
    enrolment = accounts.pending_totp_enrolment(session, settings=app_runtime().settings, user=user)
    return render_page(
        "account.html",
        who=who,
        status=status,
        user=user,
        errors=errors or {},
        message=message,
        enrolment=enrolment,
        qr=_qr_data_uri(enrolment.uri) if enrolment is not None else "",
    )


@pages.get("/account")
def account() -> Response:
    who = page_user()
    texts = TEXTS[page_lang()]
    done = request.args.get("done", "")
    keys = {"password": "password_changed", "totp_on": "totp_enabled", "totp_off": "totp_disabled"}
    return _account_page(who, message=texts[keys[done]] if done in keys else "")


@pages.post("/account/password")
def change_password() -> Response:
    who = page_user()
    check_csrf()
    texts = TEXTS[page_lang()]
    session = db_session()
    user = session.get(User, who.user_id)
    assert user is not None
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    errors: dict[str, str] = {}
    try:
        passwords.check_new_password(new, email=user.email)
    except ValueError:
        errors["new_password"] = texts["err_password"]
    if new != request.form.get("confirm_password", ""):
        errors["confirm_password"] = texts["err_password_mismatch"]
    if not current:
        errors["current_password"] = texts["err_password_required"]
    if errors:
        return _account_page(who, status=422, errors=errors)
    try:
        accounts.change_own_password(session, user=user, current=current, new=new, ip=client_ip())
    except ValidationFailedError:
        return _account_page(
            who, status=422, errors={"current_password": texts["err_current_password"]}
        )
    # Every session of the user ended (another device may have known the old password): this
    # browser goes on with a new one.
    settings = app_runtime().settings
    token = accounts.open_console_session(
        session,
        settings=settings,
        user=user,
        stage="active",
        ip=client_ip(),
        user_agent=request.user_agent.string,
    )
    response = redirect_to("pages.account", done="password")
    _set_session_cookie(response, token, max_age=settings.console_session_hours * 3600)
    return response


@pages.post("/account/totp/start")
def totp_start() -> Response:
    who = page_user()
    check_csrf()
    session = db_session()
    user = session.get(User, who.user_id)
    assert user is not None
    if user.totp_enabled_at is None:
        accounts.begin_totp_enrolment(session, settings=app_runtime().settings, user=user)
    return redirect_to("pages.account")


@pages.post("/account/totp/confirm")
def totp_confirm() -> Response:
    who = page_user()
    check_csrf()
    texts = TEXTS[page_lang()]
    session = db_session()
    user = session.get(User, who.user_id)
    assert user is not None
    code = request.form.get("code", "").strip().replace(" ", "")
    if len(code) != accounts.TOTP_DIGITS or not code.isdigit():
        return _account_page(who, status=422, errors={"code": texts["err_code"]})
    try:
        accounts.confirm_totp(
            session, settings=app_runtime().settings, user=user, code=code, ip=client_ip()
        )
    except ValidationFailedError:
        return _account_page(who, status=422, errors={"code": texts["err_totp"]})
    except ConflictError:
        return redirect_to("pages.account")
    return redirect_to("pages.account", done="totp_on")


@pages.post("/account/totp/disable")
def totp_disable() -> Response:
    who = page_user()
    check_csrf()
    texts = TEXTS[page_lang()]
    session = db_session()
    user = session.get(User, who.user_id)
    assert user is not None
    if not passwords.verify_password(user.password_hash, request.form.get("password", "")):
        return _account_page(
            who, status=422, errors={"totp_password": texts["err_current_password"]}
        )
    accounts.disable_totp(
        session, user=user, actor=accounts.user_actor(who.user_id, who.email), ip=client_ip()
    )
    return redirect_to("pages.account", done="totp_off")


# --- audit log ----------------------------------------------------------------------------------


def _day(
    name: str, tz: ZoneInfo, texts: dict[str, str], errors: dict[str, str]
) -> dt.datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        errors[name] = texts["err_date"]
        return None
    if len(raw) != 10:
        errors[name] = texts["err_date"]
        return None
    try:
        return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 east of UTC
        errors[name] = texts["err_date"]
        return None


@pages.get("/audit")
def audit() -> Response:
    who = page_user("audit")
    texts = TEXTS[page_lang()]
    session = db_session()
    tz = _tz(who.tenant_id)
    actions = core_services.audit_actions(session, tenant_id=who.tenant_id)
    errors: dict[str, str] = {}
    action = request.args.get("action", "") or None
    if action is not None and action not in actions:
        errors["action"] = texts["err_action"]
    since = _day("since", tz, texts, errors)
    until = _day("until", tz, texts, errors)
    before = request.args.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    entries = []
    if not errors:
        entries = list(
            core_services.list_audit(
                session,
                tenant_id=who.tenant_id,
                limit=AUDIT_PAGE,
                action=action,
                since=since,
                until=until + dt.timedelta(days=1) if until is not None else None,
                before_id=before_id,
            )
        )
    filters = {k: request.args.get(k, "")[:40] for k in ("action", "since", "until")}
    chosen = urlencode({k: v for k, v in filters.items() if v})
    base = url_for("pages.audit")
    older = (
        f"{base}?{chosen}{'&' if chosen else ''}before={entries[-1].id}"
        if len(entries) == AUDIT_PAGE
        else None
    )
    return render_page(
        "audit.html",
        who=who,
        status=422 if errors else 200,
        entries=entries,
        actions=actions,
        filters=filters,
        errors=errors,
        older=older,
        newest=f"{base}?{chosen}" if before_id is not None else None,
        tz=str(tz),
        local=lambda moment: moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
    )
