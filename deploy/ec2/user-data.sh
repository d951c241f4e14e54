#!/bin/bash
# EC2 launch template user data for imgrec's worker instances, the Auto Scaling group
# that an autoscaler elsewhere sizes (IMGREC_ACTUATOR=asg://imgrec-workers). Amazon
# Linux 2023. Each instance: the serving-only install from the wheel `make dist` made
# (copied to S3 once: aws s3 cp dist/imgrec-0.1.0-py3-none-any.whl s3://my-imgrec-bucket/dist/),
# then one worker per core under systemd. The workers pull the model pushed to the store
# (imgrec model push, once, where it was built). The instance profile's role needs the
# bucket and the queues: s3:GetObject/PutObject/ListBucket/DeleteObject, sqs:*Message*,
# sqs:GetQueueUrl, sqs:GetQueueAttributes, sqs:ChangeMessageVisibility.
# On scale-in EC2 stops the instance: systemd sends each worker SIGTERM and waits up to
# TimeoutStopSec for its batch; add a termination lifecycle hook if batches may be long.
set -euo pipefail

WHEEL=s3://my-imgrec-bucket/dist/imgrec-0.1.0-py3-none-any.whl

dnf install -y python3.11
useradd --system --home-dir /var/lib/imgrec --shell /sbin/nologin imgrec || true
python3.11 -m venv /opt/imgrec/venv
aws s3 cp "$WHEEL" /tmp/
/opt/imgrec/venv/bin/pip install --disable-pip-version-check "/tmp/$(basename "$WHEEL")[aws]"

install -d -m 0750 -o root -g imgrec /etc/imgrec
cat > /etc/imgrec/imgrec.env <<'ENV'
IMGREC_STORE=s3://my-imgrec-bucket/prod
IMGREC_QUEUE=sqs://imgrec
IMGREC_DATA_DIR=/var/lib/imgrec
AWS_REGION=us-east-1
ENV
chmod 0640 /etc/imgrec/imgrec.env && chgrp imgrec /etc/imgrec/imgrec.env

# deploy/systemd/imgrec-worker@.service, as it is in the repository.
cat > /etc/systemd/system/imgrec-worker@.service <<'UNIT'
# One worker; a host runs as many as it has cores: systemctl enable --now imgrec-worker@{1..4}
# It pulls the model pushed to the store if it has none, and waits (saying why) while
# there is none. For workers scaled by an autoscaler elsewhere (asg://): it never stops
# by itself; on SIGTERM it finishes its batch and gives the rest back.
[Unit]
Description=imgrec worker %i
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User=imgrec
Group=imgrec
EnvironmentFile=/etc/imgrec/imgrec.env
Environment=IMGREC_WORKER_IDLE_TIMEOUT=inf
ExecStart=/opt/imgrec/venv/bin/imgrec worker
Restart=always
RestartSec=2
RestartPreventExitStatus=2
# The longest legal batch: IMGREC_MAX_BATCH (16) x IMGREC_IMAGE_TIMEOUT (10 s).
TimeoutStopSec=180
StateDirectory=imgrec
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
for i in $(seq 1 "$(nproc)"); do
  systemctl enable --now "imgrec-worker@$i"
done
