"""Start the full-screen app: open the store, build the app, run it, close everything."""

from __future__ import annotations

import sys
from dataclasses import replace

from tui.config import Paths, Settings, ensure_private_dir
from tui.engine.base import Engine
from tui.engine.local import LocalEngine
from tui.engine.protocol import LoadParams
from tui.i18n import _
from tui.session.params import with_core_share, with_kv_states
from tui.store import Store, StoreError


def run_app(
    settings: Settings,
    paths: Paths,
    load_params: LoadParams,
    model_name: str,
    notices: list[str],
) -> int:
    """Run the app until the user quits. Returns the process exit code."""
    from tui.app.app import LmdeskApp

    try:
        store = Store.open(ensure_private_dir(paths.data_dir))
    except StoreError as exc:
        print(_("lmdesk: error: cannot open {data_dir}: {exc}",
                data_dir=paths.data_dir, exc=exc), file=sys.stderr)
        return 1
    log_path = ensure_private_dir(paths.cache_dir) / "worker.log"

    def engine_factory(params: LoadParams) -> Engine:
        params = with_core_share(with_kv_states(params, paths.data_dir), paths.cache_dir)
        return LocalEngine(params, log_path=log_path)

    # command-line load options win over the config file for this run
    settings = replace(
        settings,
        n_ctx=load_params.n_ctx,
        n_threads=load_params.n_threads,
        n_gpu_layers=load_params.n_gpu_layers,
    )
    app = LmdeskApp(
        settings=settings,
        paths=paths,
        store=store,
        engine_factory=engine_factory,
        model_path=load_params.model_path,
        model_name=model_name,
        notices=notices,
    )
    try:
        app.run()  # Textual gives the terminal back when it returns, whatever happened
    finally:
        try:
            store.close()  # the last counters and the conversation to open next time
        except StoreError as exc:
            # everything else was saved as it happened (disk full: the files as they were)
            print(_("lmdesk: error: the last changes could not be saved when quitting: {exc}",
                    exc=exc),
                  file=sys.stderr)
            return 1
    return app.return_code or 0
