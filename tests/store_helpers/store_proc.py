"""A second process for the store tests (run as a script with the repo on PYTHONPATH).

    store_proc.py hold  DATA      open the store, print "ready <read_only>", then obey stdin:
                                  "append CID TEXT" -> "ok MID"; EOF -> close and exit
    store_proc.py write DATA SEED append forever (the kill test), printing after each save:
                                  "C cid" conversation created, "A cid mid" message saved,
                                  "U cid mid length" streamed content saved
    store_proc.py crash DATA N    append N messages to a new conversation, print its id, and
                                  exit without closing the store (pending counters are lost)
    store_proc.py branch DATA SEED  edit a conversation's tree forever (the kill test),
                                  printing after each save: "A cid mid parent" message saved
                                  ("-" for no parent), "D cid id,id" subtree deleted (after
                                  "X cid mid" before it), "S cid mid" branch shown
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from tui.store import Store


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def hold(data: Path) -> None:
    store = Store.open(data)
    say(f"ready {store.read_only}")
    for line in sys.stdin:
        cmd, cid, text = line.rstrip("\n").split(" ", 2)
        if cmd == "append":
            say(f"ok {store.append_message(cid, 'user', text).id}")
    store.close()


def write(data: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(data)
    if store.read_only:
        say("read-only")
        sys.exit(3)
    metas = store.list_conversations()
    cid = metas[0].id if metas else store.create_conversation("kill test").id
    say(f"ready {cid}")
    n = 0
    while True:
        n += 1
        roll = rng.random()
        if roll < 0.05:
            cid = store.create_conversation(f"kill test {n}").id
            say(f"C {cid}")
        elif roll < 0.08:
            store.update_conversation(cid, title=f"renamed {n}", pinned=rng.random() < 0.3)
        elif roll < 0.10:
            store.set_setting("counter", n)
        elif roll < 0.25:  # a streamed reply, checkpointed, then finished
            msg = store.append_message(cid, "assistant", "", status="partial")
            say(f"A {cid} {msg.id}")
            text = ""
            for _ in range(rng.randint(1, 4)):
                text += f"token{n} " * rng.randint(1, 50)
                store.update_message(cid, msg.id, content=text)
                say(f"U {cid} {msg.id} {len(text)}")
            store.update_message(cid, msg.id, content=text, status="done", stats={"n": n})
        else:
            msg = store.append_message(cid, "user", f"message {n} " + "x" * rng.randint(0, 400))
            say(f"A {cid} {msg.id}")


def crash(data: Path, count: int) -> None:
    store = Store.open(data)
    cid = store.create_conversation("crashed").id
    for i in range(count):
        store.append_message(cid, "user", f"before the crash {i}")
    say(cid)
    os._exit(0)  # no close(): the index still has message_count 0


def branch(data: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(data)
    metas = store.list_conversations()
    cid = metas[0].id if metas else store.create_conversation("branch test").id
    say(f"ready {cid}")
    n = 0
    while True:
        n += 1
        roll = rng.random()
        tree = store.tree(cid)
        shown = tree.branch
        if roll < 0.08 and shown:  # move to another version of a message shown
            target = rng.choice(shown)
            other = rng.choice(tree.siblings(target.id))
            store.show(cid, other.id)
            say(f"S {cid} {other.id}")
        elif roll < 0.12 and len(shown) > 2:  # delete a message and what follows
            target = rng.choice(shown[1:]).id
            say(f"X {cid} {target}")  # about to: a kill may land after the save, before "D"
            gone = store.delete_subtree(cid, target)
            say(f"D {cid} {','.join(gone)}")
        else:
            if roll < 0.35 and shown:  # edit an earlier prompt, or regenerate a reply
                parent = rng.choice(shown).parent
            else:  # go on at the end of the branch shown
                parent = shown[-1].id if shown else None
            role = "assistant" if parent is not None and tree.get(parent) is not None \
                and tree.get(parent).role == "user" else "user"  # type: ignore[union-attr]
            msg = store.append_message(cid, role, f"message {n} " + "x" * rng.randint(0, 300),
                                       parent=parent)
            say(f"A {cid} {msg.id} {parent or '-'}")


def main() -> None:
    mode, data = sys.argv[1], Path(sys.argv[2])
    if mode == "hold":
        hold(data)
    elif mode == "write":
        write(data, int(sys.argv[3]))
    elif mode == "crash":
        crash(data, int(sys.argv[3]))
    elif mode == "branch":
        branch(data, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
