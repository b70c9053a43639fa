"""SeaweedFS in `weed mini` mode: the local S3."""

from __future__ import annotations

import json
from pathlib import Path

from whisperstream.settings import Settings
from whisperstream.stack.binaries import weed_binary
from whisperstream.stack.ports import free_port, free_port_pair
from whisperstream.stack.processes import ManagedProcess, launch

# `weed mini` derives the admin gRPC port that its plugin worker dials as admin port + 10000.
ADMIN_GRPC_OFFSET = 10000


def write_s3_identities(path: Path, settings: Settings) -> None:
    identities = {
        "identities": [
            {
                "name": "whisperstream",
                "credentials": [
                    {
                        "accessKey": settings.s3_access_key,
                        "secretKey": settings.s3_secret_key.get_secret_value(),
                    }
                ],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path.write_text(json.dumps(identities, indent=2))
    path.chmod(0o600)


def start_seaweed(settings: Settings, state_dir: Path) -> ManagedProcess:
    host, s3_port = settings.s3_host_port
    base = state_dir / "seaweedfs"
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "s3.json"
    write_s3_identities(config, settings)
    admin_port = free_port_pair(ADMIN_GRPC_OFFSET, host)
    ports = {name: free_port(host) for name in ("master", "volume", "filer")}
    argv = [
        str(weed_binary()),
        "mini",
        f"-dir={base / 'data'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={free_port(host)}",
        f"-s3.config={config}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={free_port(host)}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={free_port(host)}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={free_port(host)}",
        f"-admin.port={admin_port}",
        f"-admin.port.grpc={admin_port + ADMIN_GRPC_OFFSET}",
        "-admin.ui=false",
        "-webdav=false",
        # the Iceberg and Lance listeners default to fixed ports; two stacks would collide
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=256",
    ]
    return launch("s3", argv, state_dir / "logs" / "seaweedfs.log", cwd=base)
