# The inspector-device service (cafe-agent) in a container.
#
# A thin wrapper over the same set-up script the README and CI run, so the
# image holds exactly what a Debian 12 machine gets from `bash setup.sh install`
# (tests/test_install.py holds every RUN line to that script, so CI exercises it).
#
#   docker build -t cafe-agent .
#   docker run -p 127.0.0.1:8765:8765 -v cafe-agent-data:/data cafe-agent
#   docker exec -it <container> cafe-agent add-officer NAME --name 姓名 --badge 警号 --data /data
FROM debian:12-slim

WORKDIR /opt/cafe-probe
COPY . .
RUN bash setup.sh install && rm -rf /var/lib/apt/lists/*

ENV PATH="/opt/cafe-probe/.venv/bin:${PATH}" \
    CAFE_AGENT_HOME=/data \
    TZ=Asia/Shanghai
VOLUME ["/data"]
EXPOSE 8765
# Inside the container the service must listen on all of the container's
# interfaces to be reachable through the published port; publish that port on
# the host's loopback or the officers' LAN only.
CMD ["cafe-agent", "serve", "--host", "0.0.0.0", "--port", "8765", "--data", "/data"]
