"""Where everything lives in etcd: one prefix per cluster, one function per kind of key."""

from __future__ import annotations

from dataclasses import dataclass

from hastack.model.base import is_valid_name

__all__ = ["Keys", "is_valid_name"]

DEFAULT_ROOT = "/hastack"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key layout of one cluster.

    <root>/<cluster>/config            cluster configuration (CAS on mod_revision)
    <root>/<cluster>/config-delta      what the last change of it changed, written with it
                                       (model/config_delta.py): what non-DC agents follow
    <root>/<cluster>/dc                leader key on the DC's lease; create_revision = epoch
    <root>/<cluster>/deposed           who deposed the last silent DC, and its epoch
    <root>/<cluster>/members/<node>    on the node's lease: the node is online
    <root>/<cluster>/nodes/<node>      persistent: every node that ever joined (for OFFLINE)
    <root>/<cluster>/target/<node>     desired states for that node, written by the DC
    <root>/<cluster>/status/<node>     observed states reported by the node: its head, and
    <root>/<cluster>/status/<node>/<part>  the rest in parts (model/status.py)
    <root>/<cluster>/fencing/<node>    fencing history
    <root>/<cluster>/requests/cleanup/<id>  an operator's cleanup request, on a short lease
    <root>/<cluster>/assign/<name>/map                 entities -> nodes, written by the DC
    <root>/<cluster>/assign/<name>/entities/<entity>   entities added at run time
    <root>/<cluster>/assign/<name>/rebalance           a rebalance request, on a short lease
    <root>/<cluster>/evacuate/<node>   a fenced compute's evacuation record (docs/compute.md)
    <root>/<cluster>/removed/<node>    the operator declared the node gone (`hastack node remove`)
    <root>/<cluster>/rabbitmq/<rsc>/...  the hastack:rabbitmq agent's records (docs/rabbitmq.md)
    <root>/.audit/<cluster>/head       the newest audit record's sequence number
    <root>/.audit/<cluster>/log/<seq>  one record per configuration change (docs/security.md):
                                       beside the cluster prefix, so what watches it never
                                       gets them (no cluster's name starts with '.')
    <root>/<cluster>/galera/<rsc>/bootstrap      who bootstrapped Galera resource <rsc> (its
                                                 mod_revision is the generation)
    <root>/<cluster>/galera/<rsc>/nodes/<node>   that node's Galera history (docs/galera.md)
    <root>/.events/<cluster>/<id>      the event history (docs/api.md §4): beside the cluster
                                       prefix, so that what watches the prefix never gets it
    """

    cluster: str
    root: str = DEFAULT_ROOT

    @property
    def prefix(self) -> str:
        return f"{self.root}/{self.cluster}/"

    @property
    def config(self) -> str:
        return self.prefix + "config"

    @property
    def config_delta(self) -> str:
        return self.prefix + "config-delta"

    @property
    def dc(self) -> str:
        return self.prefix + "dc"

    @property
    def deposed(self) -> str:
        return self.prefix + "deposed"

    @property
    def members(self) -> str:
        return self.prefix + "members/"

    def member(self, node: str) -> str:
        return self.members + node

    @property
    def nodes(self) -> str:
        return self.prefix + "nodes/"

    def node(self, node: str) -> str:
        return self.nodes + node

    @property
    def targets(self) -> str:
        return self.prefix + "target/"

    def target(self, node: str) -> str:
        return self.targets + node

    @property
    def statuses(self) -> str:
        return self.prefix + "status/"

    def status(self, node: str) -> str:
        return self.statuses + node

    def status_parts(self, node: str) -> str:
        """The prefix of the node's report's parts (with its `/`: `status/n1` is also the
        start of `status/n10`)."""
        return self.statuses + node + "/"

    @property
    def fencing(self) -> str:
        return self.prefix + "fencing/"

    def fence_history(self, node: str) -> str:
        return self.fencing + node

    @property
    def evacuations(self) -> str:
        return self.prefix + "evacuate/"

    def evacuation(self, node: str) -> str:
        return self.evacuations + node

    @property
    def cleanup_requests(self) -> str:
        return self.prefix + "requests/cleanup/"

    def cleanup_request(self, request_id: str) -> str:
        return self.cleanup_requests + request_id

    @property
    def removals(self) -> str:
        return self.prefix + "removed/"

    def removed(self, node: str) -> str:
        return self.removals + node

    def rabbitmq(self, resource: str) -> str:
        return self.prefix + f"rabbitmq/{resource}/"

    @property
    def assignments(self) -> str:
        return self.prefix + "assign/"

    def assign_map(self, name: str) -> str:
        return f"{self.assignments}{name}/map"

    def assign_entities(self, name: str) -> str:
        return f"{self.assignments}{name}/entities/"

    def assign_entity(self, name: str, entity: str) -> str:
        return self.assign_entities(name) + entity

    def assign_rebalance(self, name: str) -> str:
        return f"{self.assignments}{name}/rebalance"

    @property
    def audit_head(self) -> str:
        return f"{self.root}/.audit/{self.cluster}/head"

    @property
    def audit_log(self) -> str:
        return f"{self.root}/.audit/{self.cluster}/log/"

    def audit_record(self, seq: int) -> str:
        return f"{self.audit_log}{seq:012d}"

    def galera(self, resource: str) -> str:
        return self.prefix + f"galera/{resource}/"

    def galera_bootstrap(self, resource: str) -> str:
        return self.galera(resource) + "bootstrap"

    def galera_node(self, resource: str, node: str) -> str:
        return self.galera(resource) + f"nodes/{node}"

    @property
    def events(self) -> str:
        # A name never starts with '.', so no cluster's prefix can be this one.
        return f"{self.root}/.events/{self.cluster}/"

    def event(self, event_id: str) -> str:
        return self.events + event_id

    def relative(self, key: str) -> str:
        """`/hastack/c1/members/n1` -> `members/n1`; keys outside the prefix stay whole."""
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key
