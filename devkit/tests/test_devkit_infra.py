"""The real servers of `start_infra`: JetStream, S3 with SigV4 and versioning, the Vault API with transit."""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from pathlib import Path

import nats
import pytest
from minio.error import S3Error
from nats.js.api import StreamInfo

from likeness.bus import TRAIN_STREAM, nats_servers
from likeness_dev.infra import S3_BUCKET, Infra, InfraStartError
from likeness_dev.ports import is_listening, wait_until_listening
from likeness_dev.procs import is_alive


async def test_jetstream_accepts_and_stores_a_message(infra: Infra) -> None:
    stream = f"TEST_{uuid.uuid4().hex[:8].upper()}"
    client = await nats.connect(infra.endpoints.nats_url, connect_timeout=5)
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        ack = await js.publish(f"{stream.lower()}.hello", b"payload", timeout=5)
        assert ack.stream == stream
        stored = await js.get_msg(stream, ack.seq)
        assert stored.data == b"payload"
    finally:
        await client.close()
    assert (infra.endpoints.nats_store_dir / "jetstream").is_dir()


def test_s3_round_trip_with_the_right_credentials(infra: Infra) -> None:
    client = infra.s3_client()
    key = f"test/{uuid.uuid4().hex}"
    client.put_object(S3_BUCKET, key, io.BytesIO(b"hello"), 5)
    response = client.get_object(S3_BUCKET, key)
    try:
        assert response.read() == b"hello"
    finally:
        response.close()
        response.release_conn()


def test_s3_refuses_a_wrong_secret_key(infra: Infra) -> None:
    impostor = infra.s3_client(secret_key=infra.endpoints.s3_secret_key + "x")
    with pytest.raises(S3Error) as refused:
        impostor.put_object(S3_BUCKET, f"test/{uuid.uuid4().hex}", io.BytesIO(b"x"), 1)
    assert refused.value.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}
    with pytest.raises(S3Error):
        impostor.list_objects(S3_BUCKET).__next__()


def test_s3_refuses_anonymous_requests(infra: Infra) -> None:
    from minio import Minio

    anonymous = Minio(infra.endpoints.s3_endpoint.removeprefix("http://"), secure=False, region="us-east-1")
    with pytest.raises(S3Error):
        anonymous.put_object(S3_BUCKET, f"test/{uuid.uuid4().hex}", io.BytesIO(b"x"), 1)


def test_bucket_keeps_every_version(infra: Infra) -> None:
    client = infra.s3_client()
    assert client.get_bucket_versioning(S3_BUCKET).status == "Enabled"
    key = f"test/{uuid.uuid4().hex}"
    first = client.put_object(S3_BUCKET, key, io.BytesIO(b"one"), 3)
    second = client.put_object(S3_BUCKET, key, io.BytesIO(b"two"), 3)
    assert first.version_id
    assert second.version_id
    assert first.version_id != second.version_id
    versions = {item.version_id for item in client.list_objects(S3_BUCKET, prefix=key, include_version=True)}
    assert versions == {first.version_id, second.version_id}


def test_transit_is_mounted_and_makes_data_keys(infra: Infra) -> None:
    vault = infra.vault_client()
    assert vault.is_authenticated()
    key_name = f"test-{uuid.uuid4().hex[:8]}"
    vault.secrets.transit.create_key(key_name, key_type="aes256-gcm96")
    data_key = vault.secrets.transit.generate_data_key(key_name, key_type="plaintext")["data"]
    assert data_key["ciphertext"].startswith("vault:v1:")
    assert data_key["plaintext"]


def test_env_names_every_endpoint(infra: Infra, infra_env: dict[str, str]) -> None:
    endpoints = infra.endpoints
    assert infra_env["LIKENESS_NATS_URL"] == endpoints.nats_url
    assert infra_env["LIKENESS_S3_ENDPOINT"] == endpoints.s3_endpoint
    assert infra_env["LIKENESS_S3_SECRET_KEY"] == endpoints.s3_secret_key
    assert infra_env["LIKENESS_S3_BUCKET"] == S3_BUCKET
    assert infra_env["LIKENESS_VAULT_TOKEN"] == endpoints.vault_token
    assert infra_env["LIKENESS_VAULT_AUTH"] == "token"
    assert infra_env["LIKENESS_ENV"] == "development"
    for url in (endpoints.nats_address, endpoints.s3_endpoint, endpoints.vault_addr):
        assert "://127.0.0.1:" in url
    # The tests' NATS URL carries the admin's credentials; services get the address and a user of their own.
    assert endpoints.nats_url.startswith("nats://admin:")
    assert endpoints.nats_url.endswith(endpoints.nats_address[7:])


def test_one_server_restarts_and_everything_stops_and_frees_its_ports(
    tmp_path: Path, server_process: None
) -> None:
    infra = Infra(tmp_path / "state")
    try:
        infra.start()
        ports = infra.ports()
        # Ready means the client ports answer; weed mini's admin UI comes up a moment later on its own.
        silent = {name: wait_until_listening(group) for name, group in ports.items()}
        assert not any(silent.values()), f"not listening after start: {silent}"

        infra.stop_vault()
        assert not any(is_listening(port) for port in ports["vault"])
        assert is_listening(infra.main_ports()["nats"])
        assert is_listening(infra.main_ports()["s3"])
        infra.start_vault()  # same address, same token; dev mode forgot the old keys but mounts transit again
        assert "transit/" in infra.vault_client().sys.list_mounted_secrets_engines()["data"]

        pids = [process.pid for process in infra.processes.values()]
    finally:
        infra.stop()
    infra.stop()  # idempotent
    assert infra.wait_released() == []
    assert not any(pid is not None and is_alive(pid, None) for pid in pids)
    assert not any(path.exists() for path in infra.leftover_files())
    assert (tmp_path / "state" / "logs" / "s3.log").is_file()


def test_a_server_that_cannot_start_is_named_with_its_log(tmp_path: Path, server_process: None) -> None:
    infra = Infra(tmp_path / "state")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", infra.main_ports()["nats"]))
    squatter.listen()
    try:
        with pytest.raises(InfraStartError) as failure:
            infra.start()
    finally:
        squatter.close()
        infra.stop()
    message = str(failure.value)
    assert message.startswith("nats ")
    assert "address already in use" in message.lower()
    assert not any(process.running for process in infra.processes.values())


async def _train_stream(infra: Infra) -> StreamInfo:
    client = await nats.connect(nats_servers(infra.endpoints.nats_url), connect_timeout=5)
    try:
        return await client.jetstream().stream_info(TRAIN_STREAM)
    finally:
        await client.close()


def test_the_bigger_stacks_servers_survive_a_lost_leader_and_a_real_vault_restart(
    tmp_path: Path, server_process: None
) -> None:
    """Three JetStream servers holding every stream at 3 replicas, and an OpenBao on persistent storage that
    `Infra` initialises once (its keys in a 0600 file) and unseals after every start."""
    infra = Infra(tmp_path / "state", nats_cluster_size=3, persistent_vault=True, startup_timeout=90.0)
    try:
        infra.start()
        assert len(infra.endpoints.nats_address.split(",")) == 3
        info = asyncio.run(_train_stream(infra))
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        leader = str(info.cluster.leader)
        assert leader in infra.nats_nodes
        infra.kill_server(leader)
        assert not infra.nats_nodes[leader].running
        infra.start_server(leader)
        assert infra.nats_nodes[leader].running

        keys = tmp_path / "state" / "vault-init.json"
        assert keys.stat().st_mode & 0o777 == 0o600
        client = infra.vault_client()
        client.secrets.transit.create_key(name="survives", mount_point="transit")
        infra.kill_server("vault")
        infra.start_server("vault")  # a new process, sealed until Infra unseals it
        found = infra.vault_client().secrets.transit.read_key(name="survives", mount_point="transit")
        assert found["data"]["name"] == "survives"
        assert infra.vault_unseal_key
    finally:
        infra.stop()
    assert infra.wait_released() == []
