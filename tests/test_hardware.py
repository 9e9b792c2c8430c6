"""Hardware encoders: argv checked against the real ffmpeg's documented options, probing, clear failures.

No hardware encoder can run on the machines these tests were written on. Command lines are checked
option by option against `ffmpeg -h encoder=NAME` (private options and their named values) and
`ffmpeg -h full` (generic codec options such as -g and -bf, and ffmpeg's own such as -vf and -c:v).
Round trips through a real device run only where VCWC_TEST_HW_ENCODERS names it, e.g.
VCWC_TEST_HW_ENCODERS=hevc_nvenc,h264_vaapi (and VCWC_TEST_HWACCEL=cuda for hardware decoding);
elsewhere the probe must report each hardware encoder as unavailable, with ffmpeg's reason.
"""

import ctypes.util
import functools
import os
import re

import numpy as np
import pytest
import torch

import vcwc
from vcwc import CodecError, FFmpegError, InputError
from vcwc.codecs import AUTO_ORDER, EncoderSettings, codec_names, ffmpeg, get_codec, probe
from vcwc.codecs.bitstream import parse_stream
from vcwc.codecs.custom import CustomCodec, parse_encoder_args

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video

HARDWARE = [name for name in codec_names() if get_codec(name).hardware]
NAMED_DEVICES = {name.strip() for name in os.environ.get("VCWC_TEST_HW_ENCODERS", "").split(",") if name.strip()}
BINARY = ffmpeg.find_ffmpeg()


@functools.cache
def help_text(*args: str) -> str:
    return ffmpeg.run([BINARY, "-hide_banner", *args], timeout=60).decode("utf-8", "replace")


@functools.cache
def encoder_options(encoder: str) -> dict[str, dict]:
    """Private options of an encoder: {name: {"type", "range", "constants"}} from `-h encoder=NAME`."""
    return parse_avoptions(help_text("-h", f"encoder={encoder}").splitlines())


def parse_avoptions(lines) -> dict[str, dict]:
    options, current = {}, None
    for line in lines:
        option = re.match(r"^  -(\S+)\s+<(\w+)>\s+[E.][D.]\.", line)
        if option:
            current = options[option.group(1)] = {"type": option.group(2), "constants": set(), "range": None}
            bounds = re.search(r"\(from (\S+) to (\S+)\)", line)
            if bounds:
                current["range"] = tuple(bounds.groups())
            continue
        constant = re.match(r"^     (\S+)\s+", line)
        if constant and current is not None:
            current["constants"].add(constant.group(1))
        elif not line.startswith("     "):
            current = None
    return options


@functools.cache
def generic_options() -> dict[str, dict]:
    """AVCodecContext options every encoder takes (-g, -bf, -qmin, -i_qfactor, ...), from `-h full`."""
    lines = help_text("-h", "full").splitlines()
    start = lines.index("AVCodecContext AVOptions:") + 1
    end = next(i for i in range(start, len(lines)) if re.match(r"^\S.*AVOptions:$", lines[i]))
    return {name: spec for name, spec in parse_avoptions(lines[start:end]).items()}


@functools.cache
def cli_options() -> set[str]:
    """ffmpeg's own options (-c, -vf, -bsf, -q, -vaapi_device, ...), from the top of `-h full`."""
    lines = help_text("-h", "full").splitlines()
    end = lines.index("AVCodecContext AVOptions:")
    return {re.sub(r"\[.*$", "", match.group(1)) for line in lines[:end] if (match := re.match(r"^-(\S+)", line))}


@functools.cache
def listed(kind: str) -> set[str]:
    """Names from `ffmpeg -filters` or `ffmpeg -bsfs`."""
    text = help_text(f"-{kind}")
    if kind == "bsfs":
        return set(text.split()[2:])  # "Bitstream filters:" then one name per line
    return {match.group(1) for line in text.splitlines() if (match := re.match(r"^ [.TSC|]+ +(\S+)", line))}


def undocumented(encoder: str, key: str, value: str) -> str | None:
    """Why `-key value` is not a documented option of this build for `encoder`, or None if it is."""
    name = key.split(":")[0]  # -c:v, -bsf:v, -q:v, -profile:v: the stream specifier is not part of the name
    spec = encoder_options(encoder).get(name) or generic_options().get(name)
    if spec is None:
        if name in cli_options():
            if name == "vf":
                unknown = {part.split("=")[0] for part in value.split(",")} - listed("filters")
                return f"filters {unknown} are not in this build" if unknown else None
            if name == "bsf":
                return None if value.split("=")[0] in listed("bsfs") else f"bitstream filter {value} is missing"
            return None
        return f"-{name} is neither an option of {encoder} nor a generic or ffmpeg option"
    if spec["type"] not in ("int", "float", "int64"):
        return None
    number = re.fullmatch(r"(-?\d+(?:\.\d+)?)([kMG]?)", value)
    if number is None:
        return None if value in spec["constants"] else f"-{name} {value}: not one of {sorted(spec['constants'])}"
    amount = float(number.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[number.group(2)]
    if spec["range"]:
        low, high = (float(b) if re.fullmatch(r"-?[\d.e+]+", b) else None for b in spec["range"])
        if (low is not None and amount < low) or (high is not None and amount > high):
            return f"-{name} {value} is outside {spec['range']}"
    return None


def command_problems(codec, settings) -> list[str]:
    job = codec.job(256, 256, settings)
    options = list(job.output_options) + list(job.global_options)
    return [problem for key, value in options if (problem := undocumented(codec.encoder, key, value))]


def settings_to_check(codec):
    """Both ends of the QP range, lossless where offered, and every preset."""
    low, high = codec.qp_range
    cases = [EncoderSettings(qp=low), EncoderSettings(qp=high)]
    if codec.supports_lossless:
        cases.append(EncoderSettings())
    cases += [EncoderSettings(qp=high, preset=preset) for preset in codec.presets or ()]
    if codec.device_help:
        cases.append(EncoderSettings(qp=low, device="0" if "GPU index" in codec.device_help else "/dev/dri/renderD129"))
    return cases


@pytest.mark.parametrize("name", [n for n in codec_names() if get_codec(n).kind in ("hardware", "profile")])
def test_every_option_passed_is_documented_by_this_ffmpeg(name):
    codec = get_codec(name)
    if codec.encoder not in ffmpeg.compiled_encoders(BINARY):
        pytest.skip(f"this ffmpeg build has no {codec.encoder} to read the options of")
    assert encoder_options(codec.encoder), f"no private options parsed for {codec.encoder}"
    for settings in settings_to_check(codec):
        assert command_problems(codec, settings) == [], settings


def test_the_option_check_catches_mistakes():
    assert undocumented("hevc_nvenc", "tunee", "hq")
    assert undocumented("hevc_nvenc", "rc", "cqp")  # AMF's name for constant QP, not NVENC's
    assert undocumented("h264_nvenc", "tune", "uhq")  # HEVC/AV1 only
    assert undocumented("h264_vaapi", "qp", "60")
    assert undocumented("h264_nvenc", "init_qpI", "52")  # av1_nvenc goes to 255, H.264 to 51
    assert undocumented("av1_nvenc", "init_qpI", "255") is None
    assert undocumented("h264_qsv", "vf", "format=nv12,hwuplod")
    assert undocumented("h264_vaapi", "rc_mode", "CQP") is None


def argv(name, **settings) -> list[str]:
    return ffmpeg.encode_command(get_codec(name).job(320, 240, EncoderSettings(**settings)), "ffmpeg")


def test_nvenc_commands():
    lossy = argv("hevc_nvenc", qp=27)
    # -qp alone would put I-frames at 0.8 x QP; the init_qp values are used as they are.
    for option in ("-init_qpI", "-init_qpP", "-init_qpB"):
        assert lossy[lossy.index(option) + 1] == "27"
    assert lossy[lossy.index("-rc") + 1] == "constqp" and "-qp" not in lossy
    lossless = argv("h264_nvenc")
    assert lossless[lossless.index("-tune") + 1] == "lossless" and "-rc" not in lossless
    with_gpu = argv("av1_nvenc", qp=200, device="1")
    assert with_gpu[with_gpu.index("-gpu") + 1] == "1"
    with pytest.raises(InputError, match="GPU index"):
        argv("hevc_nvenc", qp=20, device="/dev/dri/renderD128")
    with pytest.raises(InputError, match="NVENC's lossless tuning covers H.264 and HEVC only"):
        argv("av1_nvenc")


def test_vaapi_and_qsv_commands_upload_nv12():
    vaapi = argv("h264_vaapi", qp=30)
    assert vaapi[vaapi.index("-vaapi_device") + 1] == "/dev/dri/renderD128"
    assert vaapi.index("-vaapi_device") < vaapi.index("-i")  # a global option: before the input
    assert vaapi[vaapi.index("-vf") + 1] == "format=nv12,hwupload"
    assert vaapi[vaapi.index("-rc_mode") + 1] == "CQP" and vaapi[vaapi.index("-qp") + 1] == "30"
    assert vaapi[vaapi.index("-i_qfactor") + 1] == "1"
    assert argv("hevc_vaapi", qp=30, device="/dev/dri/renderD129")[6:8] == ["-vaapi_device", "/dev/dri/renderD129"]
    qsv = argv("hevc_qsv", qp=22, preset="veryfast")
    assert qsv[qsv.index("-q:v") + 1] == "22" and qsv[qsv.index("-vf") + 1] == "format=nv12"
    assert qsv[qsv.index("-i_qfactor") + 1] == "1" and qsv[qsv.index("-preset") + 1] == "veryfast"
    assert "-qsv_device" not in qsv and "-qsv_device" in argv("h264_qsv", qp=22, device="/dev/dri/renderD128")


def test_v4l2m2m_pins_the_qp_with_qmin_and_qmax():
    command = argv("h264_v4l2m2m", qp=33)
    assert command[command.index("-qmin") + 1] == command[command.index("-qmax") + 1] == "33"
    with pytest.raises(InputError, match="no device to choose"):
        argv("h264_v4l2m2m", qp=33, device="/dev/video11")
    with pytest.raises(InputError, match="not one of h264_v4l2m2m's presets"):
        argv("h264_v4l2m2m", qp=33, preset="fast")


@pytest.mark.parametrize("name", [n for n in HARDWARE if not get_codec(n).supports_lossless])
def test_lossy_only_encoders_refuse_lossless_with_a_hint(name):
    codec = get_codec(name)
    with pytest.raises(InputError, match=rf"{name}' has no lossless mode.*give a QP"):
        codec.check(EncoderSettings())
    with pytest.raises(InputError, match="has no lossless mode"):
        vcwc.compress({"w.weight": torch.randn(8, 8)}, LOSSLESS.with_changes(codec=name))  # before any ffmpeg runs


@pytest.mark.parametrize("name", HARDWARE)
def test_probe_reports_each_hardware_encoder_unavailable_with_ffmpeg_reason(name):
    if name in NAMED_DEVICES:
        pytest.skip(f"{name} is named in VCWC_TEST_HW_ENCODERS: its round trip is tested instead")
    status = probe.probe(get_codec(name), BINARY)
    assert not status.works
    assert status.problem in ("not compiled", "missing library", "no device", "encoder error")
    assert status.reason.startswith(status.problem + ": ") and len(status.reason) > len(status.problem) + 10
    if status.compiled:
        assert "exit code" in status.reason  # ffmpeg's own line and exit status, not a guess
    else:
        assert f"no {get_codec(name).encoder} encoder" in status.reason


def test_asking_for_an_unavailable_encoder_fails_naming_it_without_fallback(tmp_path):
    name = next((n for n in ("hevc_nvenc", "h264_vaapi", "h264_qsv") if n not in NAMED_DEVICES), None)
    if name is None:
        pytest.skip("every candidate encoder is named in VCWC_TEST_HW_ENCODERS")
    with pytest.raises(CodecError) as raised:
        vcwc.compress({"w.weight": torch.randn(16, 16)}, LOSSLESS.with_changes(codec=name, qp=24))
    message = str(raised.value)
    assert f"'{name}'" in message and probe.probe(get_codec(name), BINARY).reason in message
    assert "does not switch encoders" in message


def test_explain_failure_picks_the_telling_line():
    nvenc = (
        "[h264_nvenc @ 0x5613] Cannot load libcuda.so.1\n[vost#0:0/h264_nvenc @ 0x5613] [enc:h264_nvenc @ "
        "0x5640] Error while opening encoder - maybe incorrect parameters such as bit_rate, rate, width or "
        "height.\n[vf#0:0 @ 0x5613] Error sending frames to consumers: Operation not permitted\n"
    )
    problem, reason = probe.explain_failure(nvenc, 255)
    assert problem == "missing library" and reason.startswith("Cannot load libcuda.so.1 (the NVIDIA driver")
    assert reason.endswith("(exit code 255)")
    libva = (
        "implib-gen: libva-drm.so.2: failed to load library 'libva-drm.so.2' via dlopen: libva-drm.so.2: "
        "cannot open shared object file: No such file or directory\nffmpeg: libva-drm.so.2.init.c:122: "
        'load_library: Assertion `0 && "Assertion in generated code"\' failed.\n'
    )
    problem, reason = probe.explain_failure(libva, -6)
    assert problem == "missing library" and reason.startswith("libva-drm.so.2: failed to load")
    assert "Assert" not in reason
    vaapi = (
        "[VAAPI @ 0x56] No VA display found for device /dev/dri/renderD128.\nDevice creation failed: -22.\n"
        "Failed to set value '/dev/dri/renderD128' for option 'vaapi_device': Invalid argument\n"
        "Error parsing global options: Invalid argument\n"
    )
    assert probe.explain_failure(vaapi, 234) == (
        "no device",
        "No VA display found for device /dev/dri/renderD128.; Device creation failed: -22. "
        "(no VA-API driver for that device) (exit code 234)",
    )
    assert probe.explain_failure("[h264_qsv @ 0x1] Error creating a MFX session: -9.\n", 171)[0] == "no device"
    assert probe.explain_failure("[libx264 @ 0x1] broken\n", 1) == ("encoder error", "broken (exit code 1)")


def test_codec_auto_picks_the_first_working_encoder_in_order():
    assert AUTO_ORDER[-1] == "x265" and AUTO_ORDER.index("hevc_nvenc") < AUTO_ORDER.index("h264_nvenc")
    chosen, passed = probe.choose_auto(BINARY, EncoderSettings(qp=24))
    working = [n for n in AUTO_ORDER if probe.probe(get_codec(n), BINARY).works]
    assert chosen.name == working[0]
    assert [name for name, _ in passed] == list(AUTO_ORDER[: AUTO_ORDER.index(chosen.name)])
    # Lossless: the lossy-only encoders are passed over for that reason, not probed.
    chosen, passed = probe.choose_auto(BINARY, EncoderSettings())
    reasons = dict(passed)
    assert "no lossless mode" in reasons["hevc_qsv"] and chosen.supports_lossless
    compressed = vcwc.compress({"w.weight": torch.randn(16, 16)}, LOSSLESS.with_changes(codec="auto", qp=24))
    assert compressed.metadata["frames"][0]["codec"] == working[0]


def test_probe_results_are_cached_on_disk_per_binary(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(probe, "_checked", {})
    x264, nvenc = get_codec("x264"), get_codec("hevc_nvenc")
    first = probe.probe(x264, BINARY)
    assert first.works and not first.cached
    entries = json_entries(tmp_path)
    assert len(entries) == 1 and next(iter(entries)).startswith(ffmpeg.binary_identity(BINARY) + "|x264|")
    if "hevc_nvenc" not in NAMED_DEVICES:
        assert not probe.probe(nvenc, BINARY).works
        assert len(json_entries(tmp_path)) == 1  # failures are probed again next time, never stored
    monkeypatch.setattr(probe, "_checked", {})  # a new process
    assert probe.probe(x264, BINARY).cached
    monkeypatch.setenv(probe.PROBE_CACHE_ENV, "refresh")
    assert not probe.probe(x264, BINARY).cached
    monkeypatch.setenv(probe.PROBE_CACHE_ENV, "off")
    monkeypatch.setattr(probe, "_checked", {})
    (tmp_path / probe.CACHE_FILE).unlink()
    assert not probe.probe(x264, BINARY).cached and not (tmp_path / probe.CACHE_FILE).exists()


def json_entries(folder) -> dict:
    import json

    return json.loads((folder / probe.CACHE_FILE).read_text())


def test_a_broken_cache_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(probe, "_checked", {})
    (tmp_path / probe.CACHE_FILE).write_text("{not json")
    assert probe.probe(get_codec("x264"), BINARY).works
    assert json_entries(tmp_path)  # rewritten


MODEL = {
    "fc.weight": torch.randn(48, 96, generator=torch.Generator().manual_seed(5)) * 0.05,
    "fc.bias": torch.zeros(48),
}


def test_custom_encoder_lossless_round_trip_decodes_without_the_encoder():
    codec = {"codec": "custom:libx264", "encoder_args": "-qp 0 -preset ultrafast -g 1", "encoder_format": "h264"}
    compressed = vcwc.compress(MODEL, LOSSLESS.with_changes(**codec))
    frame = compressed.metadata["frames"][0]
    assert frame["codec"] == "custom:libx264" and frame["options"]["qp"] == "0"
    decoded = vcwc.decompress(compressed.data)  # "custom:libx264" is in no registry
    q = vcwc.quantize(MODEL["fc.weight"], vcwc.QuantConfig())
    assert torch.equal(decoded["fc.weight"], torch.from_numpy(vcwc.dequantize(q.symbols, q.scales)))


def test_custom_encoder_lossy_with_a_qp_placeholder():
    assert not CustomCodec("libx265", "-x265-params qp={qp}:log-level=error", "hevc", probe_qp=30).supports_lossless
    codec = {
        "codec": "custom:libx265",
        "encoder_args": "-x265-params qp={qp}:log-level=error",
        "encoder_format": "hevc",
    }
    compressed = vcwc.compress(MODEL, LOSSLESS.with_changes(**codec, qp=30))
    assert compressed.metadata["frames"][0]["options"]["x265-params"] == "qp=30:log-level=error"
    assert vcwc.decompress(compressed.data)["fc.weight"].shape == (48, 96)
    with pytest.raises(InputError, match="give a QP"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(**codec))


def test_custom_encoder_lossy_args_without_placeholder_are_caught_by_the_probe():
    codec = {"codec": "custom:libx264", "encoder_args": "-crf 30", "encoder_format": "h264"}
    with pytest.raises(CodecError, match=r"bit-exactly.*\{qp\}"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(**codec))
    with pytest.raises(InputError, match="needs a place in encoder_args"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(**codec, qp=30))


def test_custom_encoder_arguments_are_checked():
    assert parse_encoder_args("-vaapi_device /dev/dri/renderD128 -qp '{qp}'") == [
        ("vaapi_device", "/dev/dri/renderD128"),
        ("qp", "{qp}"),
    ]
    with pytest.raises(InputError, match="pairs"):
        parse_encoder_args("-qp")
    with pytest.raises(InputError, match="sets -f itself"):
        parse_encoder_args("-f mp4")
    with pytest.raises(InputError, match="encoder_format"):
        CustomCodec("libx264", "", "mkv")
    job = CustomCodec(
        "h264_vaapi", "-vaapi_device /dev/dri/renderD128 -vf format=nv12,hwupload -qp {qp}", "h264", probe_qp=20
    ).job(64, 64, EncoderSettings(qp=20))
    command = ffmpeg.encode_command(job, "ffmpeg")
    assert command.index("-vaapi_device") < command.index("-i") < command.index("-qp")


def test_hwaccel_without_a_device_fails_clearly():
    if ctypes.util.find_library("cuda"):
        pytest.skip("libcuda is installed here")
    compressed = vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x264"))
    with pytest.raises(FFmpegError, match="hwaccel 'cuda' could not decode") as raised:
        vcwc.decompress(compressed.data, hwaccel="cuda")
    assert "libcuda" in raised.value.stderr


def hardware_round_trip_params():
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                name not in NAMED_DEVICES, reason=f"set VCWC_TEST_HW_ENCODERS={name} where that encoder's device exists"
            ),
        )
        for name in HARDWARE
    ]


@pytest.mark.hardware
@pytest.mark.parametrize("name", hardware_round_trip_params())
def test_real_hardware_round_trip(name):
    codec = get_codec(name)
    torch.manual_seed(7)
    model = {"a.weight": torch.randn(300, 200) * 0.02, "b.weight": torch.randn(64, 3, 3, 3) * 0.1}
    qp = codec.demo_qps[0]
    compressed = vcwc.compress(model, LOSSLESS.with_changes(codec=name, qp=qp))
    decoded = vcwc.decompress(compressed.data, hwaccel=os.environ.get("VCWC_TEST_HWACCEL") or None)
    for tensor in compressed.metadata["tensors"]:
        assert tensor["snr_db"] > 15, (tensor["name"], tensor["snr_db"])
        assert decoded[tensor["name"]].shape == model[tensor["name"]].shape
    for frame in compressed.metadata["frames"]:
        info = parse_stream(compressed.container.blob(frame["blob"]), frame["container"])
        assert (info.width, info.height) == (frame["width"], frame["height"])
    if codec.supports_lossless:
        lossless = vcwc.compress(
            model, LOSSLESS.with_changes(codec=name)
        )  # the pipeline also checks bit-exactness itself
        decoded = vcwc.decompress(lossless.data)
        for tensor_name, tensor in model.items():
            q = vcwc.quantize(tensor, vcwc.QuantConfig())
            assert np.array_equal(decoded[tensor_name].numpy(), vcwc.dequantize(q.symbols, q.scales))
