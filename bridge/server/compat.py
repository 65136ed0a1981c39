"""The Plate Recognizer wire format, as the service and the on-premise SDK speak it: paths, the
plate-reader request's fields validated in the service's (Django REST framework's) order and wording,
its token check, the error bodies, timestamps and file names. What `plate-bridge serve` answers must be
what clients written against the service expect; everything about that shape lives here."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from bridge.core.errors import PayloadNotImage, PayloadTooLarge
from bridge.core.regions import normalize_region
from bridge.imaging.images import check_pixels, sniff_format
from bridge.server.limits import MAX_FORM_FIELDS, MAX_FORM_FILES, body_limit, too_large_body

CLOUD_PATH = "/v1/plate-reader/"
SDK_PATH = "/alpr"
INFO_PATH = "/info/"
STATISTICS_PATH = "/v1/statistics/"
# There is no licence to count down: the statistics report an allowance no deployment reaches, so
# clients that compute "calls remaining" (total - used) never see it run out.
UNLIMITED_CALLS = 2**31 - 1
LICENSE_KEY = "plate-bridge-local"

# DRF's bodies and wording, so clients written against the service recognise them.
INVALID_TOKEN = {"detail": "Invalid token.", "status_code": 403}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_FILE = {"upload": ["No file was submitted."]}
EMPTY_FILE = {"upload": ["The submitted file is empty."]}
NOT_AN_IMAGE = "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
BAD_TIMESTAMP = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)
NO_MMC = (
    "mmc is not supported: plate-bridge serve's offline engine reads plates only, without make, model"
    " or colour. Send mmc=false or leave it out."
)
NO_UPLOAD_URL = (
    "upload_url is not supported: plate-bridge serve does not fetch images from URLs (it would fetch any"
    " address for anyone who can reach it). Send the image itself as upload."
)
PLATE_DETECTION = "plate"
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Rejected(Exception):
    """The request is answered with this status and JSON body instead of a reading."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


@dataclass
class Parameters:
    """The plate-reader parameters of one request, validated."""

    image: bytes
    filename: str | None
    regions: tuple[str, ...] = ()
    camera_id: str | None = None
    moment: datetime | None = None
    mmc: bool = False
    config: dict[str, Any] | None = None


def error(status: int, detail: str) -> dict[str, Any]:
    return {"detail": detail, "status_code": status}


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def cloud_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sdk_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def check_token(request: Request, token: str | None, *, open_sdk_paths: bool, sdk_path: bool = True) -> None:
    """DRF TokenAuthentication's answers, in its order; on an SDK path a request without an
    Authorization header is an SDK client's, and the SDK asks for no token."""
    if token is None:
        return
    header = request.headers.get("authorization")
    if header is None and sdk_path and open_sdk_paths:
        return
    words = (header or "").split()
    if not words or words[0].lower() != "token":
        raise Rejected(403, NO_CREDENTIALS)
    if len(words) == 1:
        raise Rejected(403, error(403, "Invalid token header. No credentials provided."))
    if len(words) > 2:
        raise Rejected(403, error(403, "Invalid token header. Token string should not contain spaces."))
    if not secrets.compare_digest(words[1].encode(), token.encode()):
        raise Rejected(403, INVALID_TOKEN)


async def _read_fields(request: Request, part_limit: int) -> tuple[dict[str, list[Any]], UploadFile | None]:
    """The text fields (name -> values, in order) and the uploaded file of a request, by content type."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type:
        # DRF reads no data from a body without a media type: the upload is then simply missing.
        return {}, None
    if media_type == "application/json":
        return _json_fields(await request.body()), None
    if media_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise Rejected(415, error(415, f'Unsupported media type "{content_type}" in request.'))
    # A base64 `upload` is a text field as large as the body, past Starlette's 1 MiB per-field default.
    form: FormData = await request.form(
        max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=part_limit
    )
    fields: dict[str, list[Any]] = {}
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            # Django's rule: a part is a file exactly when it has a filename; only `upload` is kept.
            if name == "upload":
                upload = value
            continue
        fields.setdefault(name, []).append(value)
    return fields, upload


def _json_fields(body: bytes) -> dict[str, list[Any]]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Rejected(400, error(400, f"JSON parse error - {exc}")) from None
    if not isinstance(data, dict):
        raise Rejected(400, error(400, "JSON parse error - expected an object"))
    return {name: value if isinstance(value, list) else [value] for name, value in data.items()}


def _decode_base64_upload(text: str) -> bytes:
    """The bytes of a base64 `upload`: plain, line-wrapped, or a `data:...;base64,` URI."""
    text = text.strip()
    if text.startswith("data:"):
        header, separator, text = text.partition(",")
        if not separator or not header.lower().endswith(";base64"):
            raise Rejected(400, error(400, "The upload data URI is not base64."))
    # A urlencoded form whose client forgot to escape `+` arrives with spaces in its place; base64 has
    # no spaces of its own, so they are put back before line breaks are dropped.
    text = "".join(text.replace(" ", "+").split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(400, error(400, NOT_AN_IMAGE)) from None


async def read_parameters(
    request: Request, *, max_upload_bytes: int, max_image_pixels: int, supports_mmc: bool
) -> Parameters:
    """Validate a plate-reader request the way the service does: field errors, then the image."""
    fields, upload = await _read_fields(request, body_limit(max_upload_bytes))
    errors: dict[str, list[str]] = {}

    def last(name: str) -> Any:
        values = fields.get(name) or [None]
        return values[-1]

    regions: list[str] = []
    for value in fields.get("regions", []):
        try:
            code = normalize_region(value)
        except ValueError as exc:
            errors.setdefault("regions", []).append(f"{exc}.")
            continue
        if code not in regions:
            regions.append(code)

    mmc = last("mmc")
    if isinstance(mmc, str):
        mmc = BOOLEANS.get(mmc.strip().lower(), mmc)
    if mmc is not None and not isinstance(mmc, bool):
        errors["mmc"] = ["Must be a valid boolean."]
    elif mmc and not supports_mmc:
        # Answering without model_make and color would break clients that asked for them.
        errors["mmc"] = [NO_MMC]

    config = last("config")
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else None
        except ValueError:
            errors["config"] = ["Value must be valid JSON."]
            config = None
    if config is not None and not isinstance(config, dict) and "config" not in errors:
        errors["config"] = ["Value must be a JSON object."]
    if isinstance(config, dict) and config.get("detection_mode", PLATE_DETECTION) != PLATE_DETECTION:
        # The vehicle mode answers in another shape; the plate shape would crash clients that asked.
        errors["config"] = [
            f"detection_mode {config['detection_mode']!r} is not supported: plate-bridge serve's offline"
            f" engine detects plates only. Leave detection_mode out or set it to {PLATE_DETECTION!r}."
        ]
    if fields.get("upload_url"):
        errors["upload_url"] = [NO_UPLOAD_URL]

    moment = None
    timestamp = last("timestamp")
    if timestamp not in (None, ""):
        try:
            moment = datetime.fromisoformat(str(timestamp).strip())
        except ValueError:
            errors["timestamp"] = [BAD_TIMESTAMP]
        else:
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)

    camera_id = last("camera_id")
    camera_id = str(camera_id) if camera_id not in (None, "") else None

    try:
        image, filename = await _upload(fields, upload)
    except Rejected as rejected:
        # DRF reports every field's errors together; a missing or empty upload is one of them, unless
        # the client sent upload_url in its place: then that is the one thing to say.
        if "upload_url" in errors and "detail" not in rejected.body:
            raise Rejected(400, errors) from None
        if errors and "detail" not in rejected.body:
            raise Rejected(400, {**rejected.body, **errors}) from None
        raise
    if errors:
        raise Rejected(400, errors)
    if len(image) > max_upload_bytes:
        raise Rejected(413, too_large_body(len(image), max_upload_bytes, "Upload"))
    if sniff_format(image) is None:
        raise Rejected(400, error(400, NOT_AN_IMAGE))
    # The pixels the header claims, before any engine decodes them: a small PNG can claim gigabytes.
    try:
        check_pixels(image, max_image_pixels)
    except PayloadTooLarge as exc:
        width, height = exc.context["width"], exc.context["height"]
        detail = f"Image too large: {width}x{height} pixels, the limit is {max_image_pixels} pixels."
        raise Rejected(413, error(413, detail)) from None
    except PayloadNotImage:
        raise Rejected(400, error(400, NOT_AN_IMAGE)) from None
    return Parameters(
        image=image,
        filename=filename,
        regions=tuple(regions),
        camera_id=camera_id,
        moment=moment,
        mmc=bool(mmc),
        config=config,
    )


async def _upload(fields: dict[str, list[Any]], upload: UploadFile | None) -> tuple[bytes, str | None]:
    if upload is not None:
        image = await upload.read()
        await upload.close()
        name = PurePosixPath((upload.filename or "").replace("\\", "/")).name or None
    else:
        text = (fields.get("upload") or [None])[-1]
        if not isinstance(text, str) or not text.strip():
            raise Rejected(400, NO_FILE)
        image, name = _decode_base64_upload(text), None
    if not image:
        raise Rejected(400, EMPTY_FILE)
    return image, name


def default_filename(image: bytes) -> str:
    """The name of an upload that came without one (base64)."""
    return "upload.png" if sniff_format(image) == "png" else "upload.jpg"


def stored_filename(name: str | None, image: bytes, now: datetime) -> str:
    """The cloud's naming of an upload: HHMM, five random characters, then the client's file name."""
    letters = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(5))
    return f"{now:%H%M}_{letters}_{name or default_filename(image)}"
