"""Only the cluster commands the cluster (docs/security.md).

Against a real etcd started with mutual TLS (the default of every local cluster): a client
without a certificate, with one from another CA, or in plaintext can neither read nor write
the cluster's prefix; the operator's certificate can. Bad certificate files are refused with
the file named; etcd's user/password authentication works through both store clients.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from aetcd import rpc
from cryptography.hazmat.primitives import serialization

from conftest import ClusterFactory
from hastack.errors import ConfigError, StoreError, StoreRejected
from hastack.lab.local import LocalCluster
from hastack.model.agent_config import EtcdSpec, TlsFiles, parse_client_config
from hastack.pki import ClusterPki, issue, new_ca, write_file
from hastack.store import EtcdStore, Keys
from hastack.store.blocking import BlockingLeaseClient
from hastack.store.etcd import endpoint_status, parse_endpoint, prefix_end
from hastack.store.tls import StoreCredentials, check_tls_files, load_credentials

# ---- configuration: plaintext only when asked for ----------------------------------------------


def refused_spec(data: dict[str, object]) -> str:
    text = yaml.safe_dump({"cluster": "c", "etcd": data})
    with pytest.raises(ConfigError) as caught:
        parse_client_config(text, "client.yaml")
    return "\n".join(caught.value.problems)


TLS = {"ca": "/ca.crt", "cert": "/c.crt", "key": "/c.key"}


def test_plaintext_must_be_asked_for() -> None:
    assert "needs insecure: true, said explicitly" in refused_spec({"endpoints": ["a:1"]})
    assert "http://a:1 is a plaintext endpoint" in refused_spec(
        {"endpoints": ["http://a:1"], "tls": TLS}
    )
    assert "https://a:1 is a TLS endpoint, but insecure: true" in refused_spec(
        {"endpoints": ["https://a:1"], "insecure": True}
    )
    assert "contradict" in refused_spec({"endpoints": ["a:1"], "insecure": True, "tls": TLS})
    assert "username and password-file go together" in refused_spec(
        {"endpoints": ["a:1"], "tls": TLS, "username": "u"}
    )
    ok = EtcdSpec.model_validate({"endpoints": ["https://a:1"], "tls": TLS})
    assert ok.urls == ["https://a:1"]
    assert EtcdSpec.model_validate({"endpoints": ["http://a:1"], "insecure": True}).insecure


# ---- certificate files: every problem names its file -------------------------------------------


def make_files(tmp: Path) -> TlsFiles:
    ca = new_ca("t")
    client = issue(ca, "node:n1")
    ca.write(tmp / "ca.crt", tmp / "ca.key")
    client.write(tmp / "c.crt", tmp / "c.key")
    return TlsFiles(ca=str(tmp / "ca.crt"), cert=str(tmp / "c.crt"), key=str(tmp / "c.key"))


def problems(files: TlsFiles, now: datetime.datetime | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check_tls_files(files, now=now)
    return caught.value.problems


def test_good_files_pass_and_say_who_we_are(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    material = check_tls_files(files)
    assert material.subject == "node:n1"
    assert os.stat(files.key).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "ca.key").st_mode & 0o777 == 0o600


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    Path(files.cert).write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n")
    Path(files.key).write_bytes(b"garbage")
    found = problems(files.model_copy(update={"ca": str(tmp_path / "nope.crt")}))
    assert f"{tmp_path / 'nope.crt'}: cannot read (No such file or directory)" in found
    assert f"{files.cert}: not a PEM certificate" in found
    assert f"{files.key}: not a PEM private key" in found


def test_expired_and_future_certificates_are_refused(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=800)
    [expired] = problems(files, now=later)
    assert expired.startswith(f"{files.cert}: expired on ")
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    found = problems(files, now=earlier)
    assert any(p.startswith(f"{files.cert}: not valid before") for p in found)
    assert any(p.startswith(f"{files.ca}: not valid before") for p in found)


def test_key_of_another_certificate_and_another_ca(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    other_ca = new_ca("other")
    stranger = issue(other_ca, "node:n1")
    write_file(Path(files.cert), stranger.cert_pem())
    found = problems(files)
    assert f"{files.key}: is not the key of the certificate in {files.cert}" in found
    assert any(p.startswith(f"{files.cert}: not signed by the CA in {files.ca}") for p in found)


def test_an_encrypted_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    key = serialization.load_pem_private_key(Path(files.key).read_bytes(), None)
    Path(files.key).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    [found] = problems(files)
    assert found.startswith(f"{files.key}: the private key is encrypted")


def test_changed_files_are_read_again_and_bad_ones_do_not_replace_good_ones(
    tmp_path: Path,
) -> None:
    files = make_files(tmp_path)
    spec = EtcdSpec(endpoints=["a:1"], tls=files)
    creds = load_credentials(spec)
    first = creds.material()
    assert first is not None
    Path(files.cert).write_text("half a certificate")
    assert creds.material() is first  # refused: the last good material stays
    ca = ClusterPki(tmp_path)  # the same CA signs a renewed certificate
    from hastack.pki import load_issued

    renewed = issue(load_issued(ca.ca_cert, ca.ca_key), "node:n1-renewed")
    renewed.write(Path(files.cert), Path(files.key))
    now = creds.material()
    assert now is not None
    assert now.subject == "node:n1-renewed"


def test_an_agent_with_a_bad_certificate_says_which_file(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    Path(files.cert).write_text("nothing")
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cluster": "c",
                "node": "n1",
                "etcd": {"endpoints": ["https://127.0.0.1:1"], "tls": files.model_dump()},
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "hastack", "agent", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{files.cert}: not a PEM certificate" in result.stderr
    assert "Traceback" not in result.stderr


# ---- against etcd with mutual TLS ----------------------------------------------------------------


async def _plain_put(endpoint: str, channel: grpc.aio.Channel) -> str:
    """Try to write and read the cluster prefix on a channel made by hand; the error."""
    try:
        async with asyncio.timeout(3):
            await rpc.KVStub(channel).Put(rpc.PutRequest(key=b"/hastack/test/config", value=b"x"))
    except (grpc.aio.AioRpcError, TimeoutError) as exc:
        return str(exc)
    finally:
        await channel.close()
    return "written"


def test_only_the_clusters_certificates_reach_the_prefix(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(1, agents=False)
    target = parse_endpoint(lc.endpoints[0])
    ca_pem = lc.pki.ca_cert.read_bytes()
    stranger_ca = new_ca("stranger")
    stranger = issue(stranger_ca, "operator:admin")
    keys = Keys(lc.name)

    async def scenario() -> None:
        # The operator's certificate: read and write.
        async with lc.store(2.0) as store:
            await store.put(keys.config, b"good")
        # TLS without a client certificate: the member refuses the handshake.
        no_cert = grpc.aio.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=ca_pem)
        )
        assert await _plain_put(target, no_cert) != "written"
        # A certificate from another CA, the same name.
        other = grpc.aio.secure_channel(
            target,
            grpc.ssl_channel_credentials(ca_pem, stranger.key_pem(), stranger.cert_pem()),
        )
        assert await _plain_put(target, other) != "written"
        # Plaintext, with hastack's own client (explicitly insecure) and by hand.
        async with EtcdStore(lc.endpoints, 1.0, credentials=StoreCredentials.insecure()) as plain:
            with pytest.raises(StoreError, match=r"closed the connection|handshake"):
                await plain.put(keys.config, b"bad")
            with pytest.raises(StoreError):
                await plain.get(keys.config)
        assert await _plain_put(target, grpc.aio.insecure_channel(target)) != "written"
        status = await endpoint_status(lc.endpoints[0], 1.0, StoreCredentials.insecure())
        assert not status.healthy
        # Nothing of theirs landed.
        async with lc.store(2.0) as store:
            kv = await store.get(keys.config)
            assert kv is not None
            assert kv.value == b"good"
            assert kv.version == 1

    asyncio.run(scenario())
    # The lease client of the liveness thread, likewise.
    blocking = BlockingLeaseClient(lc.endpoints, credentials=StoreCredentials.insecure())
    with pytest.raises(StoreError):
        blocking.keep_alive(1, 1.0)
    blocking.close()
    # The command line: a plaintext client of a TLS cluster is told what went wrong.
    argv = ["config", "show", "--etcd", lc.endpoints[0], "--cluster", lc.name]
    result = subprocess.run(
        [sys.executable, "-m", "hastack", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "--etcd needs --etcd-ca, --etcd-cert and --etcd-key" in result.stderr


def test_etcd_user_and_password_through_both_clients(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    """etcd's authentication on top of TLS: a user whose role covers the cluster prefix
    reads and writes it (the token renewed by both clients), not another prefix; a wrong
    password is refused."""
    lc: LocalCluster = local_cluster(1, agents=False)
    endpoint = lc.endpoints[0]
    prefix = b"/hastack/"

    def channel() -> grpc.aio.Channel:
        material = lc.credentials.material()
        assert material is not None
        creds = grpc.ssl_channel_credentials(material.ca, material.key, material.cert)
        return grpc.aio.secure_channel(parse_endpoint(endpoint), creds)

    async def enable_auth() -> None:
        async with channel() as ch:
            auth = rpc.AuthStub(ch)
            await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password="root-secret"))
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
            await auth.UserAdd(rpc.AuthUserAddRequest(name="hastack", password="s3cret"))
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name="cluster"))
            perm = rpc.Permission(
                permType=rpc.Permission.READWRITE, key=prefix, range_end=prefix_end(prefix)
            )
            await auth.RoleGrantPermission(
                rpc.AuthRoleGrantPermissionRequest(name="cluster", perm=perm)
            )
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="hastack", role="cluster"))
            await auth.AuthEnable(rpc.AuthEnableRequest())

    async def forget_tokens() -> None:
        """Auth off and on again: etcd forgets every token it gave, as when one expires."""
        async with channel() as ch:
            auth = rpc.AuthStub(ch)
            root = await auth.Authenticate(
                rpc.AuthenticateRequest(name="root", password="root-secret")
            )
            await auth.AuthDisable(rpc.AuthDisableRequest(), metadata=(("token", root.token),))
            await auth.AuthEnable(rpc.AuthEnableRequest())

    asyncio.run(enable_auth())
    password = tmp_path / "etcd-password"
    write_file(password, b"s3cret\n", private=True)
    spec = lc.client().etcd.model_copy(
        update={"username": "hastack", "password_file": str(password)}
    )
    wrong = tmp_path / "wrong-password"
    write_file(wrong, b"guess\n", private=True)

    async def use() -> None:
        async with EtcdStore.for_spec(spec, 2.0) as store:
            await store.put("/hastack/test/x", b"1")
            kv = await store.get("/hastack/test/x")
            assert kv is not None
            with pytest.raises(StoreRejected, match="permission denied"):
                await store.put("/elsewhere/x", b"1")
            lease = await store.grant_lease(5)
            blocking = BlockingLeaseClient(spec.endpoints, credentials=load_credentials(spec))
            try:
                assert blocking.keep_alive(lease.id, 2.0) > 0
                # Tokens forgotten: both clients authenticate again and their calls succeed.
                assert store._conn is not None
                old_token = store._conn.metadata
                await forget_tokens()
                async with channel() as ch:  # (the old token is refused now)
                    with pytest.raises(grpc.aio.AioRpcError, match="invalid auth token"):
                        await rpc.KVStub(ch).Range(
                            rpc.RangeRequest(key=b"/hastack/test/x"), metadata=old_token
                        )
                assert blocking.keep_alive(lease.id, 2.0) > 0
                await store.put("/hastack/test/x", b"2")
            finally:
                blocking.close()
            status = await endpoint_status(endpoint, 2.0, load_credentials(spec))
            assert status.healthy, status.error
        bad = spec.model_copy(update={"password_file": str(wrong)})
        async with EtcdStore.for_spec(bad, 2.0) as store:
            with pytest.raises(StoreRejected, match="authentication failed"):
                await store.get("/hastack/test/x")
        # Certificate alone (no user): its name is no etcd user, so nothing is allowed.
        async with lc.store(2.0) as store:
            with pytest.raises(StoreError):
                await store.get("/hastack/test/x")

    asyncio.run(use())
