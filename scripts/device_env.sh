# Source this on a GPU machine without network (the project's lent H100): installs the wheels
# carried in .whl/ into /tmp/site and, when .tools/device-libs is there, sets up the Nsight
# Systems 2025.3.1 that ships inside Nsight Compute (../shared/nsys/README.md says why).
#   . scripts/device_env.sh
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || return 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# profkit itself, editable: models/ is only importable as profkit.models through the install.
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e . || return 1
ncu_host=$(ls -d /opt/nvidia/nsight-compute/*/host 2>/dev/null | sort -V | tail -n 1)
if [ -n "$ncu_host" ] && [ -d .tools/device-libs ] && [ ! -x /tmp/nsys-ncu/target-linux-x64/nsys ]; then
  mkdir -p /tmp/nsys-ncu
  cp -r "$ncu_host/target-linux-x64" /tmp/nsys-ncu/
  ln -sfn "$ncu_host/linux-desktop-glibc_2_11_3-x64" /tmp/nsys-ncu/host-linux-x64
fi
if [ -x /tmp/nsys-ncu/target-linux-x64/nsys ]; then
  export LD_LIBRARY_PATH=$PWD/.tools/device-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PROFKIT_NSYS=/tmp/nsys-ncu/target-linux-x64/nsys
fi
