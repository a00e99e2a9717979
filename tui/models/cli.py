"""``lmdesk models``: list, info, pull, rm and catalogue, with --json for scripts.

The same data the model switcher shows: the local models from their headers, each with a fit
estimate for this machine, and the catalogue with its fit before download.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from tui.config import Paths, Settings
from tui.engine.gguf import GGUFError, read_header
from tui.i18n import _
from tui.models.calibration import record_measured, speed_model
from tui.models.catalogue import (
    CatalogueEntry,
    CatalogueError,
    find_entry,
    parse_catalogue,
    read_catalogue,
)
from tui.models.choice import Assessment, assess, choose_quantization, ctx_label, fmt_tok_s
from tui.models.download import (
    DownloadError,
    DownloadProgress,
    download,
    list_gguf_files,
    pick_file,
)
from tui.models.fit import FitEstimate, Resources, estimate_fit, measure_rss, verdict_name
from tui.models.listing import (
    HeaderCache,
    LocalModel,
    default_cache_path,
    find_model,
    hf_cache_dir,
    list_models,
)
from tui.models.measure import measure_speed
from tui.models.speed import SpeedModel, model_key
from tui.models.split import SplitEstimate

MiB = 1 << 20


def add_models_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help=_("list, describe, download and remove models"))
    msub = p.add_subparsers(dest="models_command")

    ls = msub.add_parser("list", help=_("local models with their fit on this machine"))
    ls.add_argument("--dir", action="append", default=[], metavar="FOLDER",
                    help=_("also scan this folder for GGUF files (repeatable)"))
    ls.add_argument("--json", action="store_true")

    info = msub.add_parser("info", help=_("one model's header and fit estimate"))
    info.add_argument("name", help=_("a name from `lmdesk models list` or a GGUF path"))
    info.add_argument("--n-ctx", type=int, help=_("context window to size for"))
    info.add_argument("--measure", action="store_true",
                      help=_("load it in a worker and print the measured speed and RSS beside "
                             "the prediction (the run also calibrates the predictions)"))
    info.add_argument("--dir", action="append", default=[], metavar="FOLDER")
    info.add_argument("--rpc", action="append", default=[], metavar="HOST:PORT[,HOST:PORT]",
                      help=_("judge it spread over these `lmdesk rpc-worker`s (asks each one "
                             "its memory, round trip and bandwidth)"))
    info.add_argument("--json", action="store_true")

    pull = msub.add_parser("pull", help=_("download a GGUF from the Hugging Face Hub"))
    pull.add_argument("repo", help=_("a repo id (owner/name) or a catalogue id"))
    pull.add_argument("file", nargs="?", help=_("the file (default: Q4_K_M or the smallest)"))
    pull.add_argument("--quant", help=_("pick the catalogue file of this quantization"))
    pull.add_argument("--json", action="store_true")

    rm = msub.add_parser("rm", help=_("remove a downloaded model from the Hugging Face cache"))
    rm.add_argument("name")
    rm.add_argument("--json", action="store_true")

    cat = msub.add_parser("catalogue", help=_("well-known models and whether they fit here"))
    cat.add_argument("id", nargs="?", help=_("one entry: every quantization with its fit and "
                                             "speed"))
    cat.add_argument("--n-ctx", type=int, help=_("judge at this context (default: chosen per "
                                                 "file)"))
    cat.add_argument("--check", metavar="FILE",
                     help=_("check a catalogue file (for the config folder) and say what is wrong"))
    cat.add_argument("--json", action="store_true")


def cmd_models(args: argparse.Namespace, settings: Settings, paths: Paths) -> int:
    out: TextIO = sys.stdout
    command = getattr(args, "models_command", None) or "list"
    try:
        if command == "list":
            return _list(args, settings, paths, out)
        if command == "info":
            return _info(args, settings, paths, out)
        if command == "pull":
            with _network_for_download(args):
                return _pull(args, out)
        if command == "rm":
            return _rm(args, settings, paths, out)
        if command == "catalogue":
            return _catalogue(args, settings, paths, out)
    except (DownloadError, GGUFError, _CliError, CatalogueError) as exc:
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(exc)}) + "\n")
        print(_("lmdesk: error: models {command}: {exc}",
                command=command, exc=exc), file=sys.stderr)
        return 1
    print(_("lmdesk models: unknown command {command!r}", command=command), file=sys.stderr)
    return 2


def _split(args: argparse.Namespace, m: LocalModel, a: Assessment | None, res: Resources,
           settings: Settings) -> SplitEstimate | None:
    """``--rpc``: the model spread over those workers, each asked how it is."""
    if not getattr(args, "rpc", None) or a is None or m.shape is None:
        return None
    from tui.models.split import estimate_split
    from tui.rpc.probe import parse_workers, probe

    try:
        addresses = parse_workers(args.rpc)
    except ValueError as exc:
        raise _CliError(_("--rpc: {exc}", exc=exc)) from None
    statuses = [probe(address, measure=True) for address in addresses]
    # the workers are taken to compute as fast as this machine does (on loopback they are it)
    return estimate_split(m.shape, statuses, res, local_tok_s=a.speed.tok_s,
                          n_ctx=a.context.n_ctx, reading_speed=settings.reading_speed)


class _CliError(Exception):
    pass


@contextlib.contextmanager
def _network_for_download(args: argparse.Namespace) -> Iterator[None]:
    """A download is the user asking for the network: open it to the Hub's hosts only, for
    this command, unless they said --offline on the same command line."""
    from tui.offline import HF_HOSTS, allow_network

    if getattr(args, "offline", None) is True:
        raise _CliError(_("--offline was given, and a download needs the network: drop --offline"))
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    saved = os.environ.pop("HF_HUB_OFFLINE", None)
    try:
        with allow_network(endpoint, hosts=HF_HOSTS):
            yield
    finally:
        if saved is not None:
            os.environ["HF_HUB_OFFLINE"] = saved


def _size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / MiB:.0f}M"


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _fit_json(fit: FitEstimate | None) -> dict[str, Any] | None:
    return asdict(fit) if fit is not None else None


def _assess(m: LocalModel, res: Resources, speed: SpeedModel, settings: Settings,
            n_ctx: int | None = None) -> Assessment | None:
    if m.shape is None or m.error:
        return None
    return assess(m.shape, res, speed, n_ctx=n_ctx or settings.n_ctx,
                  n_gpu_layers=settings.n_gpu_layers, key=model_key(m.path, m.size_bytes),
                  reading_speed=settings.reading_speed)


def _row_json(m: LocalModel, a: Assessment | None) -> dict[str, Any]:
    row: dict[str, Any] = {**m.to_json(), "fit": _fit_json(a.fit if a else None)}
    if a is not None:
        row.update(a.to_json())
    else:
        row.update(verdict=None, predicted_tok_s=None, predicted_prompt_tok_s=None)
    return row


def _models(args: argparse.Namespace, settings: Settings, paths: Paths) -> list[LocalModel]:
    folders = list(settings.model_dirs) + list(getattr(args, "dir", []) or [])
    return list_models(folders, cache_dir=paths.cache_dir)


def _list(args: argparse.Namespace, settings: Settings, paths: Paths, out: TextIO) -> int:
    models = _models(args, settings, paths)
    res = Resources.current()
    speed = speed_model(paths.data_dir)
    judged = [_assess(m, res, speed, settings) for m in models]
    from tui.models.profiles import stored_profiles

    profiles = stored_profiles(paths.data_dir)
    if getattr(args, "json", False):
        rows = [_row_json(m, a) for m, a in zip(models, judged, strict=True)]
        out.write(json.dumps({"models": rows, "profiles": [p.to_dict() for p in profiles],
                              "reading_speed": settings.reading_speed},
                             indent=1) + "\n")
        return 0
    if not models:
        out.write(_("no models found: `lmdesk models pull REPO` downloads one, `--dir FOLDER` "
                    "scans a folder\n"))
        return 0
    head = f"{'NAME':28} {'ARCH':9} {'PARAMS':>6} {'QUANT':8} {'SIZE':>6} {'N_CTX':>5} "
    out.write(head + f"{'TOK/S':>5} FIT    SOURCE\n")
    for m, a in zip(models, judged, strict=True):
        if m.error:
            out.write(_("{value:28} unreadable ({source}): {error}\n",
                        value=m.name[:28], source=m.source, error=m.error))
            continue
        verdict = f"{verdict_name(a.verdict):6}" if a else "?     "
        rate = fmt_tok_s(a.tok_s) if a else "-"
        ctx = ctx_label(a.context.n_ctx) if a else "-"
        out.write(
            f"{m.name[:28]:28} {(m.architecture or '-')[:9]:9} {_params(m.n_params):>6} "
            f"{(m.quantization or '-')[:8]:8} {_size(m.size_bytes):>6} {ctx:>5} {rate:>5} "
            f"{verdict} {m.source}\n"
        )
        if m.note:
            out.write(_("{blank:28} note: {note}\n", blank="", note=m.note))
    if profiles:
        out.write(f"\n{'PROFILE':28} MODEL\n")
        for p in profiles:
            lora = f" + LoRA {p.lora_path}" if p.lora_path else ""
            out.write(f"{p.nickname[:28]:28} {p.model_name or Path(p.model_path).stem}{lora}\n")
    out.write(_("\nfit: memory with margin and at least {reading_speed:g} tok/s (green); tok/s "
                "predicted for this machine ({models} model(s) measured here so far)\n",
                reading_speed=settings.reading_speed, models=speed.fitted().models))
    return 0


def _resolve(name: str, args: argparse.Namespace, settings: Settings, paths: Paths) -> LocalModel:
    candidate = Path(name).expanduser()
    if candidate.is_file():
        cache = HeaderCache(default_cache_path(paths.cache_dir))
        st = candidate.stat()
        info = cache.get(str(candidate), st.st_size, st.st_mtime_ns)
        cache.save()
        return LocalModel(candidate.stem, str(candidate), "path", st.st_size, **info)
    models = _models(args, settings, paths)
    found = find_model(models, name)
    if found is None:
        names = ", ".join(m.name for m in models) or "none"
        raise _CliError(_("no model named {name!r} (known: {names})", name=name, names=names))
    return found


def _info(args: argparse.Namespace, settings: Settings, paths: Paths, out: TextIO) -> int:
    m = _resolve(args.name, args, settings, paths)
    if m.error:
        raise _CliError(m.error)
    res = Resources.current()
    speed = speed_model(paths.data_dir)
    a = _assess(m, res, speed, settings, args.n_ctx)
    fit = a.fit if a else None
    measured = measured_speed = None
    if args.measure:
        measured_speed = measure_speed(m.path, n_ctx=fit.n_ctx if fit else args.n_ctx,
                                       temperature=settings.temperature)
        record_measured(paths.data_dir, m.path, measured_speed)
        measured = measure_rss(m.path, fit.n_ctx if fit else args.n_ctx)
    split = _split(args, m, a, res, settings)
    if args.json:
        data = _row_json(m, a)
        if split is not None:
            data["rpc_split"] = split.to_json()
        if measured is not None:
            data["measured"] = asdict(measured)
        if measured_speed is not None:
            data["measured_tok_s"] = round(measured_speed.gen_tok_s, 2)
            data["measured_prompt_tok_s"] = round(measured_speed.prompt_tok_s, 1)
            data["measured_speed"] = asdict(measured_speed)
        out.write(json.dumps(data, indent=1) + "\n")
        return 0
    header = read_header(m.path)
    rows = [
        ("name", m.name), ("path", m.path), ("source", m.source),
        ("architecture", m.architecture), ("parameters", f"{m.n_params:,}"),
        ("quantization", m.quantization), (_("file size"), f"{m.size_bytes:,} bytes"),
        (_("trained context"), f"{m.context_length:,}"), ("layers", m.n_layers),
        (_("heads / kv heads"), f"{header.n_heads} / {header.n_kv_heads}"),
        (_("head dim (k/v)"), f"{header.key_length} / {header.value_length}"),
        ("vocabulary", f"{header.vocab_size:,}"),
        (_("chat template"),
         _("yes") if m.has_chat_template else _("no (base model: completion mode)")),
    ]
    if m.origin:
        rows.append((_("found in"), m.origin))
    if header.sliding_window:
        rows.append((_("sliding window"), f"{header.sliding_window} tokens"))
    if m.note:
        rows.append(("note", m.note))
    if m.app_parameters:
        rows.append((f"{m.source} parameters", m.app_parameters))
    if m.app_template:
        rows.append((f"{m.source} template", m.app_template.strip().splitlines()[0][:60] + " …"))
    for key, value in rows:
        out.write(f"{key:18} {value}\n")
    if a is not None and fit is not None:
        out.write(_("\nverdict: {verdict}: {reason}\n", verdict=a.verdict, reason=a.reason))
        out.write(_("context: {reason}\n", reason=a.context.reason))
        out.write(_("speed:   predicted {fmt_tok_s} tok/s generating, {prompt_tok_s:.0f} tok/s "
                    "reading the prompt ({basis})\n",
                    fmt_tok_s=fmt_tok_s(a.speed.tok_s), prompt_tok_s=a.speed.prompt_tok_s,
                    basis=a.speed.basis))
        out.write(_("memory at n_ctx {n_ctx}: {summary}\n  {reason}\n",
                    n_ctx=fit.n_ctx, summary=fit.summary(), reason=fit.reason))
        out.write(_("  suggested: n_ctx {suggested_n_ctx}, n_gpu_layers "
                    "{suggested_n_gpu_layers}\n",
                    suggested_n_ctx=fit.suggested_n_ctx,
                    suggested_n_gpu_layers=fit.suggested_n_gpu_layers))
        for note in fit.notes:
            out.write(_("  note: {note}\n", note=note))
    if split is not None:
        out.write("\n" + "\n".join(split.lines()) + "\n")
    if measured_speed is not None and a is not None:
        ratio = a.speed.tok_s / measured_speed.gen_tok_s if measured_speed.gen_tok_s else 0.0
        out.write(
            _("\nmeasured speed: {gen_tok_s:.1f} tok/s generating (best of {count}), "
              "{prompt_tok_s:.0f} tok/s prompt; predicted {tok_s:.1f} (predicted/measured "
              "{ratio:.2f}); kept to calibrate later predictions\n",
              gen_tok_s=measured_speed.gen_tok_s, count=len(measured_speed.runs),
              prompt_tok_s=measured_speed.prompt_tok_s, tok_s=a.speed.tok_s, ratio=ratio)
        )
    if measured is not None and fit is not None:
        err = (fit.ram_bytes / measured.rss_after_reply - 1) * 100
        out.write(
            _("measured worker RSS: {value:.0f} MiB loaded, {value2:.0f} MiB after a reply; "
              "estimate {value3:.0f} MiB ({err:+.1f}%)\n",
              value=measured.rss_loaded / MiB, value2=measured.rss_after_reply / MiB,
              value3=fit.ram_bytes / MiB, err=err)
        )
    return 0


def _progress_printer(out: TextIO) -> Any:
    last = [-1]

    def show(p: DownloadProgress) -> None:
        pct = int((p.fraction or 0) * 100)
        if pct == last[0] and p.done_bytes != p.total_bytes:
            return
        last[0] = pct
        eta = f"{p.eta_s:.0f}s left" if p.eta_s is not None else ""
        out.write(_("\r{filename}: {size}/{size2} {pct:3d}% {value:.1f} MiB/s {eta}   ",
                    filename=p.filename, size=_size(p.done_bytes), size2=_size(p.total_bytes),
                    pct=pct, value=p.bytes_per_s / MiB, eta=eta))
        out.flush()

    return show


def _pull(args: argparse.Namespace, out: TextIO) -> int:
    entry = find_entry(args.repo)
    repo = entry.repo_id if entry else args.repo
    if "/" not in repo:
        raise _CliError(_("{repo!r} is neither a repo id (owner/name) nor a catalogue id; see "
                          "`lmdesk models catalogue`", repo=args.repo))
    filename = args.file
    if filename is None and entry is not None:
        try:
            filename = entry.file(args.quant).file
        except KeyError as exc:
            raise _CliError(str(exc.args[0])) from None
    if filename is None:
        files = list_gguf_files(repo)
        filename = pick_file(files)
        if filename is None:
            raise _CliError(_("{repo} has no GGUF files", repo=repo))
        if not args.json:
            listing = ", ".join(f"{n} ({_size(s)})" for n, s in files)
            print(_("{repo}: {listing}; taking {filename}",
                    repo=repo, listing=listing, filename=filename), file=sys.stderr)
    if entry is not None and not args.json:
        quant = next((f.quantization for f in entry.files if f.file == filename), None)
        if quant is not None:
            print(_("fit before download: {summary}",
                    summary=entry.fit(quant).summary()), file=sys.stderr)
    cancel = threading.Event()
    show = None if args.json else _progress_printer(sys.stderr)
    try:
        result = download(repo, filename, progress=show, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise _CliError(_("cancelled")) from None
    finally:
        if show is not None:
            sys.stderr.write("\n")
    fit = estimate_fit(result.path, resources=Resources.current())
    if args.json:
        out.write(json.dumps({**asdict(result), "path": str(result.path),
                              "fit": _fit_json(fit)}) + "\n")
    else:
        state = _("already cached") if result.cached else _("downloaded in {seconds:.1f} s",
                                                         seconds=result.seconds)
        out.write(f"{result.path} ({_size(result.size_bytes)}, {state})\n{fit.summary()}\n")
    return 0


def remove_cached_file(path: Path, cache_root: Path) -> int:
    """Remove one file from the Hugging Face cache: its snapshot link and, when no other
    snapshot uses it, its blob. Returns the bytes freed."""
    repo_dir = next((p for p in path.parents if p.parent == cache_root), None)
    if repo_dir is None:
        raise _CliError(_("{path} is not in the Hugging Face cache at {cache_root}",
                          path=path, cache_root=cache_root))
    blob = path.resolve()
    freed = 0
    path.unlink()
    others = [p for p in (repo_dir / "snapshots").rglob("*")
              if p.is_symlink() or p.is_file()]
    if blob.exists() and not any(o.resolve() == blob for o in others):
        freed = blob.stat().st_size
        blob.unlink()
    if not any(p.is_file() for p in (repo_dir / "snapshots").rglob("*")):
        freed += sum(p.stat().st_size for p in repo_dir.rglob("*") if p.is_file())
        shutil.rmtree(repo_dir)
    return freed


def _rm(args: argparse.Namespace, settings: Settings, paths: Paths, out: TextIO) -> int:
    m = _resolve(args.name, args, settings, paths)
    if m.source != "hf-cache":
        hint = {"packaged": _("it comes with a pip package: pip uninstall it"),
                "folder": _("it is in a folder you added: delete the file yourself")}
        raise _CliError(_("{name} is not a download; {get}",
                          name=m.name, get=hint.get(m.source, 'delete it yourself')))
    root = hf_cache_dir()
    real_root = next((p for p in Path(m.path).parents if p.name.startswith("models--")), None)
    freed = remove_cached_file(Path(m.path), real_root.parent if real_root else root)
    if args.json:
        out.write(json.dumps({"removed": m.path, "freed_bytes": freed}) + "\n")
    else:
        out.write(_("removed {name} ({size} freed)\n", name=m.name, size=_size(freed)))
    return 0


def _catalogue(args: argparse.Namespace, settings: Settings, paths: Paths,
               out: TextIO) -> int:
    if args.check:
        path = Path(args.check).expanduser()
        try:
            checked = parse_catalogue(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise _CliError(_("{path}: cannot read ({exc})", path=path, exc=exc)) from None
        out.write(_("{path}: {count} entries, usable; copy it to {value} to use it\n",
                    path=path, count=len(checked), value=paths.config_dir / 'catalogue.json'))
        return 0
    loaded = read_catalogue(paths.config_dir)
    if loaded.problem:
        print(_("lmdesk: {problem}", problem=loaded.problem), file=sys.stderr)
    res = Resources.current()
    speed = speed_model(paths.data_dir)
    entries: list[CatalogueEntry] = list(loaded.entries)
    if args.id:
        entry = find_entry(args.id, paths.config_dir)
        if entry is None:
            raise _CliError(_("no catalogue entry {id!r}; `lmdesk models catalogue` lists them",
                              id=args.id))
        entries = [entry]
    choices = [choose_quantization(e, res, speed, n_ctx=args.n_ctx,
                                   reading_speed=settings.reading_speed) for e in entries]
    if args.json:
        data = []
        for c in choices:
            e = c.entry
            best = c.best
            data.append({
                **asdict(e), "default_file": e.file().file if e.has_files else None,
                "best_quantization": best.quantization if best else None,
                "best_file": best.file if best else None,
                "line": c.line(),
                "verdict": best.assessment.verdict if best else "red",
                "predicted_tok_s": round(best.assessment.tok_s, 2) if best else None,
                "predicted_prompt_tok_s":
                    round(best.assessment.speed.prompt_tok_s, 1) if best else None,
                "fit": _fit_json(best.assessment.fit) if best else None,
                "quantizations": [{"quantization": o.quantization, "file": o.file,
                                   "size": o.size, **o.assessment.to_json()}
                                  for o in c.options],
            })
        out.write(json.dumps({"catalogue": data, "source": loaded.source,
                              "reading_speed": settings.reading_speed}, indent=1) + "\n")
        return 0
    if args.id:
        c = choices[0]
        e = c.entry
        when = f"checked {e.verified}" if e.verified else _("NOT checked")
        out.write(f"{e.name} ({e.repo_id}, {e.license}; {when})\n")
        out.write(_("can do: {capabilities}; languages {languages}\n",
                    capabilities=", ".join(e.capabilities.labels()) or "-",
                    languages=", ".join(e.capabilities.languages)))
        if e.notes:
            out.write(_("note: {notes}\n", notes=e.notes))
        out.write(_("best here: {line}\n\n", line=c.line()))
        out.write(f"{'QUANT':8} {'SIZE':>6} {'N_CTX':>6} {'TOK/S':>6} FIT    FILE\n")
        for o in c.options:
            a = o.assessment
            out.write(f"{o.quantization:8} {_size(o.size):>6} {ctx_label(a.context.n_ctx):>6} "
                      f"{fmt_tok_s(a.tok_s):>6} {verdict_name(a.verdict):6} {o.file}\n")
        return 0
    out.write(f"{'ID':30} {'PARAMS':>6} {'BEST':7} {'SIZE':>6} {'N_CTX':>5} {'TOK/S':>5} "
              "FIT    CAN DO\n")
    for c in choices:
        e = c.entry
        caps = ",".join(e.capabilities.labels())
        if c.best is None:
            out.write(f"{e.id[:30]:30} {_params(e.params):>6} {c.line()}\n")
            continue
        a = c.best.assessment
        out.write(f"{e.id[:30]:30} {_params(e.params):>6} {c.best.quantization:7} "
                  f"{_size(c.best.size):>6} {ctx_label(a.context.n_ctx):>5} "
                  f"{fmt_tok_s(a.tok_s):>5} {verdict_name(a.verdict):6} {caps}\n")
    out.write(_("\nbest: the most faithful file that is green here (fits with margin and at "
                "least {reading_speed:g} tok/s), else the best that fits; `lmdesk models "
                "catalogue ID` shows every file. Against {size} available RAM. Catalogue: "
                "{source}.\n",
                reading_speed=settings.reading_speed, size=_size(res.ram_available),
                source=loaded.source))
    return 0
