"""Generate Pacemaker CIBs of N nodes x M resources, with a status section, for benchmarks.

The mix: clones are the cluster-wide services (an API, memcached, a Galera writer), so their
number grows slowly with the size, as in real control planes: about one anonymous clone per
40 resources up to 25, one promotable clone (with promotion scores) per 200 up to 5, each with
an instance on every node. Of the rest, ~15 % are groups of 3 members, the others plain
primitives. Constraints: a mandatory colocation and order between every 5th resource and the
one before it, an order between every 7th and the one before, a location preference for every
3rd resource. Everything is already running (as a real cluster would be), so the scheduler's
job is to confirm placement; the failed-node variant takes one node out, which forces moves.

    python bench/cibgen.py --nodes 16 --resources 500 [--failed-node] > cib.xml
"""

from __future__ import annotations

import argparse
import random
import sys
from xml.sax.saxutils import quoteattr

__all__ = ["generate"]


_EMPTY_DIGEST = "f2317cad3d54cec5d7d7aa7d0bf35cf8"  # md5 of " <parameters/>\n"


def _attr(**values: object) -> str:
    return " ".join(f"{k.replace('_', '-')}={quoteattr(str(v))}" for k, v in values.items())


def _op(rsc: str, node: str, call: int, task: str, rc: int = 0, interval: int = 0) -> str:
    key = f"{rsc}_{task}_{interval}"
    expected = 7 if task == "monitor" and interval == 0 else rc
    return (
        f"<lrm_rsc_op {_attr(id=f'{rsc}_last_{call}', operation_key=key, operation=task)} "
        f"{_attr(transition_key=f'1:1:{expected}:00000000-0000-0000-0000-000000000000')} "
        f"{_attr(transition_magic=f'0:{rc};1:1:{expected}:00000000-0000-0000-0000-000000000000')} "
        f"{_attr(call_id=call, rc_code=rc, op_status=0, interval=interval)} "
        f"{_attr(last_rc_change=1700000000, exec_time=10, queue_time=0, on_node=node)} "
        # The digest of an empty parameter set: without it Pacemaker sees a changed
        # definition and restarts everything.
        f'op-digest="{_EMPTY_DIGEST}"/>'
    )


def generate(nodes: int, resources: int, *, failed_node: bool = False, seed: int = 1) -> str:
    rng = random.Random(seed)
    names = [f"node{i:03d}" for i in range(1, nodes + 1)]
    prims: list[tuple[str, str]] = []  # (resource id, template kind) for status
    config: list[str] = []
    tops: list[str] = []
    running: dict[str, list[tuple[str, str, int | None]]] = {n: [] for n in names}
    # (rsc, role, promotion score) per node
    index = 0
    count = 0
    anonymous = min(25, max(1, resources // 40))
    promotable = min(5, max(1, resources // 200))
    clone_at = {round((i + 0.5) * resources / anonymous) for i in range(anonymous)}
    promotable_at = {round((i + 0.3) * resources / promotable) for i in range(promotable)}
    promotable_at -= clone_at
    while count < resources:
        index += 1
        roll = index % 100
        if count in clone_at:  # anonymous clone
            cid, pid = f"clone{index}", f"cl{index}"
            config.append(
                f'<clone id="{cid}"><meta_attributes id="{cid}-meta">'
                f'<nvpair id="{cid}-i" name="interleave" value="true"/></meta_attributes>'
                f'<primitive id="{pid}" class="ocf" provider="pacemaker" type="Dummy">'
                f'<operations><op id="{pid}-mon" name="monitor" interval="10s"/></operations>'
                "</primitive></clone>"
            )
            tops.append(cid)
            for n in names:
                running[n].append((pid, "Started", None))
            count += 1
        elif count in promotable_at:  # promotable clone
            cid, pid = f"ms{index}", f"pr{index}"
            config.append(
                f'<clone id="{cid}"><meta_attributes id="{cid}-meta">'
                f'<nvpair id="{cid}-p" name="promotable" value="true"/></meta_attributes>'
                f'<primitive id="{pid}" class="ocf" provider="pacemaker" type="Stateful">'
                f'<operations><op id="{pid}-mon" name="monitor" interval="10s"/></operations>'
                "</primitive></clone>"
            )
            tops.append(cid)
            for i, n in enumerate(names):
                running[n].append((pid, "Promoted" if i == 0 else "Started", 10 if i == 0 else 5))
            count += 1
        elif roll % 7 == 3 and count + 3 <= resources:  # group of three
            gid = f"grp{index}"
            node = names[rng.randrange(nodes)]
            members = [f"g{index}m{j}" for j in range(3)]
            body = "".join(
                f'<primitive id="{m}" class="ocf" provider="heartbeat" type="Dummy">'
                f'<operations><op id="{m}-mon" name="monitor" interval="10s"/></operations>'
                "</primitive>"
                for m in members
            )
            config.append(f'<group id="{gid}">{body}</group>')
            tops.append(gid)
            for m in members:
                running[node].append((m, "Started", None))
            count += 3
        else:
            pid = f"rsc{index}"
            config.append(
                f'<primitive id="{pid}" class="ocf" provider="heartbeat" type="Dummy">'
                f'<operations><op id="{pid}-mon" name="monitor" interval="10s"/></operations>'
                "</primitive>"
            )
            tops.append(pid)
            running[names[rng.randrange(nodes)]].append((pid, "Started", None))
            count += 1
        prims.append((tops[-1], ""))
    constraints: list[str] = []
    plain = [t for t in tops if t.startswith(("rsc", "grp"))]
    for i, t in enumerate(plain):
        if i and i % 5 == 0:
            constraints.append(
                f'<rsc_colocation id="col-{t}" rsc="{t}" with-rsc="{plain[i - 1]}" '
                'score="INFINITY"/>'
            )
            constraints.append(f'<rsc_order id="ord-{t}" first="{plain[i - 1]}" then="{t}"/>')
            # keep the status consistent with the colocation: same node as the primary
        elif i and i % 7 == 0:
            constraints.append(
                f'<rsc_order id="ord-{t}" first="{plain[i - 1]}" then="{t}" kind="Optional"/>'
            )
        if i % 3 == 0:
            node = names[rng.randrange(nodes)]
            constraints.append(
                f'<rsc_location id="loc-{t}" rsc="{t}" node="{node}" '
                f'score="{rng.choice([50, 100, 200])}"/>'
            )
    # Make the running state satisfy the colocations (dependent on its primary's node).
    where: dict[str, str] = {}
    for n, entries in running.items():
        for rsc, _, _ in entries:
            where.setdefault(rsc, n)
    for i, t in enumerate(plain):
        if i and i % 5 == 0:
            primary = plain[i - 1]
            p_first = f"{primary.replace('grp', 'g')}m0" if primary.startswith("grp") else primary
            target = where[p_first]
            members = (
                [f"{t.replace('grp', 'g')}m{j}" for j in range(3)] if t.startswith("grp") else [t]
            )
            for m in members:
                old = where[m]
                running[old] = [e for e in running[old] if e[0] != m]
                running[target].append((m, "Started", None))
                where[m] = target

    out = [
        '<cib epoch="1" num_updates="1" admin_epoch="0" validate-with="pacemaker-3.0" '
        'have-quorum="1" dc-uuid="1">',
        '<configuration><crm_config><cluster_property_set id="opts">',
        '<nvpair id="opts-stonith" name="stonith-enabled" value="false"/>',
        '<nvpair id="opts-fencing" name="fencing-enabled" value="false"/>',
        '<nvpair id="opts-stick" name="no-quorum-policy" value="stop"/>',
        "</cluster_property_set></crm_config>",
        '<rsc_defaults><meta_attributes id="rsc-defaults">'
        '<nvpair id="rsc-defaults-stick" name="resource-stickiness" value="100"/>'
        "</meta_attributes></rsc_defaults>",
        "<nodes>",
        *(f'<node id="{i + 1}" uname="{n}"/>' for i, n in enumerate(names)),
        "</nodes><resources>",
        *config,
        "</resources><constraints>",
        *constraints,
        "</constraints></configuration><status>",
    ]
    for i, n in enumerate(names):
        down = failed_node and i == 0
        state = (
            'in_ccm="false" crmd="offline" join="down" expected="down"'
            if down
            else 'in_ccm="true" crmd="online" join="member" expected="member"'
        )
        out.append(f'<node_state id="{i + 1}" uname="{n}" {state}>')
        attrs = [(rsc, score) for rsc, _, score in running[n] if score is not None]
        if attrs:
            out.append(
                f'<transient_attributes id="{i + 1}"><instance_attributes id="status-{i + 1}">'
            )
            out += [
                f'<nvpair id="status-{i + 1}-{rsc}" name="master-{rsc}" value="{score}"/>'
                for rsc, score in attrs
            ]
            out.append("</instance_attributes></transient_attributes>")
        out.append(f'<lrm id="{i + 1}"><lrm_resources>')
        for call, (rsc, role, _) in enumerate(running[n], start=2):
            kind = "Stateful" if rsc.startswith("pr") else "Dummy"
            provider = "pacemaker" if rsc.startswith(("pr", "cl")) else "heartbeat"
            ops = [_op(rsc, n, call * 3, "start")]
            if role == "Promoted":
                ops.append(_op(rsc, n, call * 3 + 1, "promote"))
            ops.append(_op(rsc, n, call * 3 + 2, "monitor", 8 if role == "Promoted" else 0, 10000))
            out.append(
                f'<lrm_resource id="{rsc}" class="ocf" provider="{provider}" type="{kind}">'
                + "".join(ops)
                + "</lrm_resource>"
            )
        out.append("</lrm_resources></lrm></node_state>")
    out.append("</status></cib>")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--resources", type=int, required=True)
    parser.add_argument("--failed-node", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.stdout.write(
        generate(args.nodes, args.resources, failed_node=args.failed_node, seed=args.seed)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
