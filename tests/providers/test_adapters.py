"""Adapters are pure translation: request -> wire body, tested without a network."""

from __future__ import annotations

import json

import pytest

from asyncvideo import KNOWN_MODELS, VideoRequest, errors
from asyncvideo.providers import PROVIDERS, ImageData, Router

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
IMG_URL = "https://img.example/cat.png"


def build(request: VideoRequest, images: dict[str, ImageData] | None = None) -> object:
    provider = Router().provider_for(request.model, request.provider)
    provider.check(request)
    return provider.build(request, images or {})


@pytest.mark.parametrize(("model", "provider"), sorted(KNOWN_MODELS.items()))
def test_every_documented_model_routes(model: str, provider: str) -> None:
    assert Router().provider_for(model).name == provider


def test_routing_is_data_and_overridable() -> None:
    assert Router().provider_for("KLING-v9-turbo").name == "kling"
    assert Router({"acme-": "vidu"}).provider_for("acme-video-1").name == "vidu"
    assert Router().provider_for("anything", provider="jimeng").name == "jimeng"
    with pytest.raises(errors.ValidationError, match="unknown model"):
        Router().provider_for("mystery-model")
    with pytest.raises(ValueError, match="unknown provider"):
        Router({"x": "nope"})


def test_sora_form() -> None:
    body = build(
        VideoRequest(prompt="cat", model="sora-2", seconds=8, size="1280x720", extra={"k": 1}),
        {"image": ImageData(data=PNG, filename="cat.png", content_type="image/png")},
    )
    form = body.form  # type: ignore[attr-defined]
    assert form == {
        "prompt": "cat",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
        "metadata": '{"k":1}',
    }
    assert body.files["input_reference"].data == PNG  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fields",
    [{"seed": 1}, {"negative_prompt": "x"}, {"audio": True}, {"image": IMG_URL}],
)
def test_sora_refuses_what_it_cannot_take(fields: dict[str, object]) -> None:
    with pytest.raises(errors.ValidationError):
        build(VideoRequest(prompt="cat", model="sora-2", **fields))  # type: ignore[arg-type]


def test_wan_text_to_video_metadata() -> None:
    body = build(
        VideoRequest(
            prompt="garden",
            model="wan2.5-t2v-preview",
            seconds=5,
            size="1920x1080",
            resolution="1080p",
            watermark=False,
            prompt_extend=True,
            audio=True,
            seed=7,
        )
    )
    form = body.form  # type: ignore[attr-defined]
    assert form["size"] == "1920*1080"
    assert json.loads(form["metadata"]) == {
        "resolution": "1080P",
        "watermark": False,
        "prompt_extend": True,
        "audio": True,
        "seed": 7,
    }


def test_wan_image_and_keyframes_by_url() -> None:
    i2v = build(
        VideoRequest(prompt="move", model="wan2.2-i2v-flash", image=IMG_URL),
        {"image": ImageData(url=IMG_URL)},
    )
    assert json.loads(i2v.form["metadata"]) == {"img_url": IMG_URL}  # type: ignore[attr-defined]
    kf = build(
        VideoRequest(
            prompt="t", model="wan2.2-kf2v-flash", image=IMG_URL, last_frame=IMG_URL + "2"
        ),
        {"image": ImageData(url=IMG_URL), "last_frame": ImageData(url=IMG_URL + "2")},
    )
    assert json.loads(kf.form["metadata"]) == {  # type: ignore[attr-defined]
        "first_frame_url": IMG_URL,
        "last_frame_url": IMG_URL + "2",
    }


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        ("wan2.5-i2v-preview", {"image": PNG}, "image"),  # bytes: Wan takes URLs only
        ("wan2.5-i2v-preview", {"image": "/tmp/cat.png"}, "image"),
        ("wan2.5-i2v-preview", {}, "image"),  # i2v needs an image
        ("wan2.5-t2v-preview", {"image": IMG_URL}, "image"),
        ("wan2.2-kf2v-flash", {"image": IMG_URL}, "last_frame"),
        ("wan2.2-i2v-plus", {"image": IMG_URL, "audio": True}, "audio"),  # wan2.5 only
        ("wan2.5-t2v-preview", {"size": "1000x1000"}, "size"),
        ("wan2.5-t2v-preview", {"size": "1920x1080", "resolution": "720P"}, "size"),
        ("wan2.5-t2v-preview", {"resolution": "4K"}, "resolution"),
    ],
)
def test_wan_refusals(model: str, fields: dict[str, object], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        build(VideoRequest(prompt="p", model=model, **fields))  # type: ignore[arg-type]
    assert caught.value.field == field


def test_kling_body() -> None:
    body = build(
        VideoRequest(
            prompt="astronaut",
            model="kling-v1",
            seconds=5,
            size="1920x1080",
            image=IMG_URL,
            last_frame="/tmp/tail.png",
            negative_prompt="blur",
            seed=20231234,
        ),
        {"image": ImageData(url=IMG_URL), "last_frame": ImageData(data=PNG)},
    )
    sent = body.json  # type: ignore[attr-defined]
    assert sent["model"] == "kling-v1"
    assert (sent["duration"], sent["width"], sent["height"], sent["size"]) == (
        5,
        1920,
        1080,
        "1920x1080",
    )
    assert sent["image"] == IMG_URL
    assert sent["metadata"]["negative_prompt"] == "blur"
    assert sent["metadata"]["seed"] == 20231234
    assert sent["metadata"]["image_tail"].startswith("iVBORw0KGgo")  # base64 of a PNG


def test_jimeng_and_vidu_metadata() -> None:
    jimeng = build(
        VideoRequest(prompt="p", model="jimeng_vgfm_i2v_l20", size="1920x1080", image=IMG_URL),
        {"image": ImageData(url=IMG_URL)},
    ).json  # type: ignore[attr-defined]
    assert jimeng["metadata"] == {
        "req_key": "jimeng_vgfm_i2v_l20",
        "image_urls": [IMG_URL],
        "aspect_ratio": "16:9",
    }
    vidu = build(
        VideoRequest(
            prompt="p",
            model="viduq1",
            seconds=5,
            resolution="1080P",
            callback_url="https://me.example/hook",
            extra={"movement_amplitude": "auto", "bgm": False},
        )
    ).json  # type: ignore[attr-defined]
    assert vidu["metadata"] == {
        "duration": 5,
        "resolution": "1080p",
        "callback_url": "https://me.example/hook",
        "movement_amplitude": "auto",
        "bgm": False,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "x", "seconds": 0},
        {"prompt": "x", "seconds": -3},
        {"prompt": "x", "size": "big"},
        {"prompt": "x", "model": ""},
        {"prompt": "x", "image": 42},
    ],
)
def test_request_shape_errors(fields: dict[str, object]) -> None:
    with pytest.raises(errors.ValidationError):
        VideoRequest(**fields)  # type: ignore[arg-type]


def test_request_repr_hides_image_bytes() -> None:
    shown = repr(VideoRequest(prompt="p", model="sora-2", image=PNG))
    assert "40 bytes" in shown
    assert "PNG" not in shown


def test_all_providers_registered() -> None:
    assert set(PROVIDERS) == {"sora", "wan", "kling", "jimeng", "vidu"}
