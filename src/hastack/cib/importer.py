"""A Pacemaker CIB (configuration and status) as a hastack ClusterConfig and ClusterState.

    import_cib(xml_text, source) -> CibImport      pure: text in, data out, no file I/O
    to_yaml(config) -> str                          the configuration as hastack YAML

The import is total: a well-formed CIB always gives a CibImport. What hastack cannot express
is left out and listed in `unsupported` (a case with anything listed there is not comparable
with Pacemaker); what Pacemaker would ignore anyway is dropped and listed in `notes`.
Malformed XML, or a document that is not a CIB, raises ConfigError.

Names: Pacemaker ids that are not valid hastack names (':' in them, longer than 63
characters) get deterministic substitutes; `names` maps each substitute back, and
`pacemaker_name()` translates any hastack name (clone instance suffixes included).

Time ("now", for failure-timeout): the CIB's `execution-date` when it has one — crm_simulate
uses it too — else the caller's `now`, else the newest time recorded in the status section
(the moment the snapshot describes). crm_simulate without an execution date uses the wall
clock; a caller that wants the same passes `now=time.time()`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from hastack.cib.cibxml import Findings, XmlDoc, parse_int
from hastack.cib.configuration import read_configuration
from hastack.cib.names import NameMap
from hastack.cib.status import read_status
from hastack.errors import ConfigError
from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState, base_id

__all__ = ["CibImport", "import_cib", "to_yaml"]


@dataclass(frozen=True)
class CibImport:
    config: ClusterConfig
    state: ClusterState
    # "<feature> '<id>': <why>" for everything left out that changes placement.
    unsupported: tuple[str, ...]
    # Short tags for what the case exercises ("clone", "promotable", "bundle", ...).
    features: frozenset[str]
    # The tags of what is listed in `unsupported` ("bundle", "ticket", "remote", ...).
    unsupported_features: frozenset[str] = frozenset()
    # hastack name -> Pacemaker id, for every id that had to be renamed.
    names: Mapping[str, str] = field(default_factory=dict)
    # What was dropped or rewritten without changing Pacemaker's decisions.
    notes: tuple[str, ...] = ()
    # Where `state.now` came from: "execution-date", "caller" or "status".
    now_source: str = "status"

    @property
    def is_supported(self) -> bool:
        return not self.unsupported

    def pacemaker_name(self, name: str) -> str:
        """The Pacemaker id of a hastack name; `name:N` clone instances keep their suffix."""
        if name in self.names:
            return self.names[name]
        base = base_id(name)
        if base != name and base in self.names:
            return self.names[base] + name[len(base) :]
        return name


def import_cib(xml_text: str, source: str, now: float | None = None) -> CibImport:
    """Convert a CIB; ConfigError only when the text is not a well-formed CIB."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ConfigError(source, [f"{source}: not well-formed XML: {exc}"]) from None
    if root.tag != "cib":
        raise ConfigError(source, [f"{source}: not a CIB (the root element is <{root.tag}>)"])
    doc = XmlDoc(root)
    reserved = [el.get("id", "") for el in root.iter()] + [
        el.get("uname", "") for el in root.iter("node")
    ]
    names = NameMap(reserved)
    findings = Findings()
    when, now_source = _now(root, now)
    config_result = read_configuration(doc, names, findings)
    state = read_status(doc, config_result, names, findings, when)
    return CibImport(
        config=config_result.config,
        state=state,
        unsupported=findings.unsupported_items,
        features=frozenset(findings.features),
        unsupported_features=frozenset(findings.unsupported_features),
        names=names.substitutions(),
        notes=findings.notes,
        now_source=now_source,
    )


def _now(root: ET.Element, now: float | None) -> tuple[float, str]:
    execution = parse_int(root.get("execution-date"))
    if execution is not None:
        return float(execution), "execution-date"
    if now is not None:
        return now, "caller"
    newest = 0
    for op in root.iter("lrm_rsc_op"):
        for key in ("last-rc-change", "last-run", "last_rc_change", "last_run"):
            value = parse_int(op.get(key))
            if value is not None and value > newest:
                newest = value
    return float(newest), "status"


def to_yaml(config: ClusterConfig) -> str:
    """hastack YAML that parse_cluster_config reads back to the same configuration."""
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
