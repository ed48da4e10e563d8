"""The NVML pass against the fake `pynvml`: every metric and label, and every failure mode."""
from __future__ import annotations

import os
import time

import pynvml
import pytest

from exporter.nvml.processes import process_name
from exporter.nvml.sampler import CLOCK_EVENT_REASONS
from tests.exporter.conftest import promtool_check, render, samples, value
from devstack.fake_nvml import GiB, FakeGPU, FakeMigDevice, FakeNVML, FakeProcess

UUID0 = "GPU-00000000-0000-0000-0000-000000000000"
UUID1 = "GPU-00000001-0000-0000-0000-000000000001"


def test_every_metric_and_label_of_a_healthy_gpu(make_sampler):
    fake = FakeNVML([FakeGPU(fan_speeds=[30, 45], retired_single_bit=[1, 2], retired_double_bit=[3], remapped_rows=(2, 1, 1, 0))])
    text = render(make_sampler(fake, pcie_throughput=True).sample())
    g = {"gpu": "0", "uuid": UUID0}
    assert value(text, "nvidia_gpu_nvml_up") == 1
    assert value(text, "nvidia_gpu_nvml_status", reason="ok") == 1
    assert value(text, "nvidia_gpu_devices") == 1
    (info_labels, info_value), = samples(text)["nvidia_gpu_info"]
    assert info_value == 1
    assert info_labels == {
        **g, "name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "cuda_version": "12.4",
        "pci_bus_id": "00000000:10:00.0", "compute_capability": "9.0",
    }
    assert value(text, "nvidia_gpu_up", **g) == 1
    assert value(text, "nvidia_gpu_utilization_ratio", **g) == pytest.approx(0.42)
    assert value(text, "nvidia_gpu_memory_utilization_ratio", **g) == pytest.approx(0.17)
    assert value(text, "nvidia_gpu_memory_total_bytes", **g) == 80 * GiB
    assert value(text, "nvidia_gpu_memory_used_bytes", **g) == 20 * GiB
    assert value(text, "nvidia_gpu_memory_reserved_bytes", **g) == 512 * 1024**2
    assert value(text, "nvidia_gpu_memory_free_bytes", **g) == 80 * GiB - 20 * GiB - 512 * 1024**2
    assert value(text, "nvidia_gpu_temperature_celsius", **g, sensor="gpu") == 55
    assert value(text, "nvidia_gpu_temperature_celsius", **g, sensor="memory") == 61
    assert value(text, "nvidia_gpu_power_usage_watts", **g) == 250
    assert value(text, "nvidia_gpu_power_limit_watts", **g) == 700
    assert value(text, "nvidia_gpu_energy_joules_total", **g) == pytest.approx(123_456.789)
    assert value(text, "nvidia_gpu_clock_hz", **g, clock="sm") == 1980e6
    assert value(text, "nvidia_gpu_clock_hz", **g, clock="memory") == 2619e6
    assert value(text, "nvidia_gpu_clock_hz", **g, clock="graphics") == 1755e6
    active = {lbl["reason"]: v for lbl, v in samples(text)["nvidia_gpu_clock_event_active"]}
    assert active == {name: (1.0 if name in ("gpu_idle", "sw_power_cap") else 0.0) for name, _ in CLOCK_EVENT_REASONS}
    assert value(text, "nvidia_gpu_pstate", **g) == 0
    assert value(text, "nvidia_gpu_fan_speed_ratio", **g, fan="0") == pytest.approx(0.30)
    assert value(text, "nvidia_gpu_fan_speed_ratio", **g, fan="1") == pytest.approx(0.45)
    assert value(text, "nvidia_gpu_ecc_errors_total", **g, type="corrected") == 3
    assert value(text, "nvidia_gpu_ecc_errors_total", **g, type="uncorrected") == 0
    assert value(text, "nvidia_gpu_retired_pages", **g, cause="single_bit") == 2
    assert value(text, "nvidia_gpu_retired_pages", **g, cause="double_bit") == 1
    rows = {lbl["kind"]: v for lbl, v in samples(text)["nvidia_gpu_remapped_rows"]}
    assert rows == {"correctable": 2, "uncorrectable": 1, "pending": 1, "failure": 0}
    assert value(text, "nvidia_gpu_pcie_replay_errors_total", **g) == 7
    assert value(text, "nvidia_gpu_pcie_throughput_bytes_per_second", **g, direction="tx") == 1000 * 1024
    assert value(text, "nvidia_gpu_pcie_throughput_bytes_per_second", **g, direction="rx") == 2000 * 1024
    assert value(text, "nvidia_gpu_last_xid_timestamp_seconds", **g) == 0
    assert value(text, "nvidia_gpu_snapshot_stale") == 0
    assert value(text, "nvidia_gpu_snapshot_timestamp_seconds") == pytest.approx(time.time(), abs=60)
    assert promtool_check(text) == ""


def test_opt_in_metrics_are_absent_by_default(make_sampler):
    fake = FakeNVML([FakeGPU(processes=[FakeProcess(pid=10, used_memory=GiB)])])
    parsed = samples(render(make_sampler(fake).sample()))
    assert "nvidia_gpu_pcie_throughput_bytes_per_second" not in parsed
    assert "nvidia_gpu_process_memory_used_bytes" not in parsed
    assert fake.calls["nvmlDeviceGetPcieThroughput"] == 0
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 0


def test_only_supported_clock_event_reasons_get_series_and_throttle_api_is_the_fallback(make_sampler, errors):
    gpu = FakeGPU(clock_event_reasons=0x40, supported_clock_event_reasons=0x1 | 0x40)
    gpu.unsupported |= {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetSupportedClocksEventReasons"}
    fake = FakeNVML([gpu])
    text = render(make_sampler(fake).sample())
    active = {lbl["reason"]: v for lbl, v in samples(text)["nvidia_gpu_clock_event_active"]}
    assert active == {"gpu_idle": 0, "hw_thermal_slowdown": 1}
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 1


def test_unsupported_functions_are_omitted_counted_once_and_not_retried(make_sampler, errors):
    gpu = FakeGPU()
    gpu.unsupported |= {"nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetRemappedRows", "memory_temp", "nvmlDeviceGetMemoryInfo_v2"}
    fake = FakeNVML([gpu])
    sampler = make_sampler(fake)
    for _ in range(3):
        text = render(sampler.sample())
    parsed = samples(text)
    assert "nvidia_gpu_energy_joules_total" not in parsed
    assert "nvidia_gpu_remapped_rows" not in parsed
    assert "nvidia_gpu_memory_reserved_bytes" not in parsed  # v1 fallback has no reserved figure
    assert value(text, "nvidia_gpu_memory_used_bytes", gpu="0") == 20 * GiB + 512 * 1024**2
    assert value(text, "nvidia_gpu_temperature_celsius", gpu="0", sensor="memory") is None
    assert value(text, "nvidia_gpu_temperature_celsius", gpu="0", sensor="gpu") == 55
    assert value(text, "nvidia_gpu_up", gpu="0") == 1  # unsupported is not an error of the device
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert fake.calls["nvmlDeviceGetRemappedRows"] == 1
    assert errors.count("nvmlDeviceGetTotalEnergyConsumption", "not_supported") == 1
    assert errors.count("nvmlDeviceGetFieldValues", "not_supported") == 1
    assert promtool_check(text) == ""


def test_a_lost_gpu_reports_up_0_and_the_others_keep_reporting(make_sampler, errors):
    fake = FakeNVML(3)
    sampler = make_sampler(fake)
    sampler.sample()
    fake.gpus[1].lost = True
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_up", gpu="1", uuid=UUID1) == 0
    assert value(text, "nvidia_gpu_up", gpu="0") == 1
    assert value(text, "nvidia_gpu_up", gpu="2") == 1
    assert value(text, "nvidia_gpu_memory_used_bytes", gpu="1") is None
    assert value(text, "nvidia_gpu_memory_used_bytes", gpu="2") == 20 * GiB
    assert value(text, "nvidia_gpu_nvml_up") == 1
    assert errors.count(error="gpu_is_lost") == 1  # the pass stops querying a lost device at once
    assert promtool_check(text) == ""


def test_a_gpu_whose_handle_cannot_be_obtained_keeps_its_known_uuid(make_sampler):
    fake = FakeNVML(2)
    sampler = make_sampler(fake)
    sampler.sample()
    fake.gpus[0].errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_GPU_IS_LOST
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_up", gpu="0", uuid=UUID0) == 0
    assert value(text, "nvidia_gpu_up", gpu="1", uuid=UUID1) == 1


def test_a_per_device_error_marks_the_device_down_but_serves_its_other_metrics(make_sampler, errors):
    gpu = FakeGPU()
    gpu.errors["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_UNKNOWN
    fake = FakeNVML([gpu, FakeGPU()])
    text = render(make_sampler(fake).sample())
    assert value(text, "nvidia_gpu_up", gpu="0") == 0
    assert value(text, "nvidia_gpu_power_usage_watts", gpu="0") is None
    assert value(text, "nvidia_gpu_temperature_celsius", gpu="0", sensor="gpu") == 55
    assert value(text, "nvidia_gpu_up", gpu="1") == 1
    assert errors.count("nvmlDeviceGetPowerUsage", "unknown") == 1


def test_a_binding_library_mismatch_is_counted_and_not_retried(make_sampler, errors):
    gpu = FakeGPU()
    gpu.exceptions["nvmlDeviceGetPcieReplayCounter"] = pynvml.NVMLLibraryMismatchError("unversioned function")
    fake = FakeNVML([gpu])
    sampler = make_sampler(fake)
    for _ in range(2):
        text = render(sampler.sample())
    assert value(text, "nvidia_gpu_pcie_replay_errors_total", gpu="0") is None
    assert value(text, "nvidia_gpu_power_usage_watts", gpu="0") == 250
    assert errors.count("nvmlDeviceGetPcieReplayCounter", "nvml_library_mismatch_error") == 1
    assert fake.calls["nvmlDeviceGetPcieReplayCounter"] == 1


@pytest.mark.parametrize(
    "fake_kwargs, reason, error",
    [
        ({"library_present": False}, "library_not_found", "library_not_found"),
        ({"driver_loaded": False}, "driver_not_loaded", "driver_not_loaded"),
        ({"init_error": pynvml.NVML_ERROR_NO_PERMISSION}, "no_permission", "no_permission"),
        ({"init_error": pynvml.NVML_ERROR_UNKNOWN}, "error", "unknown"),
    ],
)
def test_nvml_down_reports_up_0_with_a_reason(make_sampler, errors, fake_kwargs, reason, error):
    text = render(make_sampler(FakeNVML(2, **fake_kwargs)).sample())
    assert value(text, "nvidia_gpu_nvml_up") == 0
    assert [lbl["reason"] for lbl, _ in samples(text)["nvidia_gpu_nvml_status"]] == [reason]
    assert "nvidia_gpu_up" not in samples(text)
    assert errors.count("nvmlInit", error) == 1
    assert promtool_check(text) == ""


def test_reinit_after_driver_restart_with_exponential_backoff(make_sampler, clock, errors):
    fake = FakeNVML(2)
    sampler = make_sampler(fake, reinit_backoff_initial_seconds=1, reinit_backoff_max_seconds=4)
    assert value(render(sampler.sample()), "nvidia_gpu_nvml_up") == 1
    fake.stop_driver()
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_nvml_up") == 0
    assert value(text, "nvidia_gpu_nvml_status", reason="driver_not_loaded") == 1
    attempt_times = []
    for step in range(1, 25):  # 12 s of passes every 0.5 s with the driver still down
        clock.advance(0.5)
        before = fake.calls["nvmlInit"]
        sampler.sample()
        if fake.calls["nvmlInit"] > before:
            attempt_times.append(step * 0.5)
    assert attempt_times == [1.0, 3.0, 7.0, 11.0]  # delays 1, 2, 4, then capped at 4
    fake.start_driver()
    clock.advance(4)
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_nvml_up") == 1
    assert value(text, "nvidia_gpu_up", gpu="1") == 1
    # after a success the backoff starts again from the initial delay
    fake.stop_driver()
    sampler.sample()
    fake.start_driver()
    clock.advance(1)
    assert value(render(sampler.sample()), "nvidia_gpu_nvml_up") == 1


def test_missing_library_is_retried_and_recovers_when_installed(make_sampler, clock):
    fake = FakeNVML(1, library_present=False)
    sampler = make_sampler(fake, reinit_backoff_initial_seconds=2)
    assert value(render(sampler.sample()), "nvidia_gpu_nvml_up") == 0
    fake.library_present = True
    assert value(render(sampler.sample()), "nvidia_gpu_nvml_up") == 0  # still backing off
    clock.advance(2)
    assert value(render(sampler.sample()), "nvidia_gpu_nvml_up") == 1


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_xid_events_are_counted_and_timestamped_per_gpu_and_code(make_sampler):
    fake = FakeNVML(2)
    sampler = make_sampler(fake)
    sampler.sample()
    assert sampler.xid.wait_registered(5)
    before = time.time()
    for gpu, xid in ((1, 79), (1, 79), (1, 48), (0, 13)):
        assert fake.push_xid(gpu, xid) == 1
    assert _wait(lambda: sum(sampler.xid.counts().values()) == 4)
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_xid_errors_total", gpu="1", uuid=UUID1, xid="79") == 2
    assert value(text, "nvidia_gpu_xid_errors_total", gpu="1", xid="48") == 1
    assert value(text, "nvidia_gpu_xid_errors_total", gpu="0", uuid=UUID0, xid="13") == 1
    last = value(text, "nvidia_gpu_last_xid_timestamp_seconds", gpu="1")
    assert before <= last <= time.time()
    assert promtool_check(text) == ""


def test_xid_counts_survive_a_driver_restart_and_the_event_thread_is_restarted(make_sampler, clock):
    fake = FakeNVML(1)
    sampler = make_sampler(fake, reinit_backoff_initial_seconds=1)
    sampler.sample()
    assert sampler.xid.wait_registered(5)
    fake.push_xid(0, 31)
    assert _wait(lambda: sampler.xid.counts())
    fake.stop_driver()
    sampler.sample()
    assert not sampler.xid.running
    text = render(sampler.sample())
    assert value(text, "nvidia_gpu_xid_errors_total", xid="31") == 1  # a counter never vanishes
    fake.start_driver()
    clock.advance(1)
    sampler.sample()
    assert sampler.xid.wait_registered(5) and sampler.xid.running
    fake.push_xid(0, 31)
    assert _wait(lambda: sampler.xid.counts().get(("0", UUID0, "31")) == 2)


def test_xid_registration_unsupported_on_one_gpu_does_not_affect_the_other(make_sampler, errors):
    fake = FakeNVML([FakeGPU(xid_supported=False), FakeGPU()])
    sampler = make_sampler(fake)
    sampler.sample()
    assert sampler.xid.wait_registered(5)
    assert fake.registered_event_devices() == {1}
    assert errors.count("nvmlDeviceRegisterEvents", "not_supported") == 1


def test_process_memory_series_follow_process_churn(make_sampler):
    gpu = FakeGPU(processes=[FakeProcess(100, 2 * GiB), FakeProcess(200, GiB, kind="graphics"), FakeProcess(300, None)])
    fake = FakeNVML([gpu])
    sampler = make_sampler(fake, process_memory=True)
    text = render(sampler.sample())
    procs = {lbl["pid"]: (lbl["process"], v) for lbl, v in samples(text)["nvidia_gpu_process_memory_used_bytes"]}
    assert procs == {"100": ("proc100", 2 * GiB), "200": ("proc200", GiB)}  # pid 300: memory not available
    gpu.processes = [FakeProcess(200, 3 * GiB, kind="graphics"), FakeProcess(400, GiB)]
    text = render(sampler.sample())
    procs = {lbl["pid"]: v for lbl, v in samples(text)["nvidia_gpu_process_memory_used_bytes"]}
    assert procs == {"200": 3 * GiB, "400": GiB}  # pid 100 exited: its series is gone
    assert promtool_check(text) == ""


def test_process_series_cap_keeps_the_largest_and_counts_the_dropped(make_sampler):
    gpus = [FakeGPU(processes=[FakeProcess(i, i * GiB) for i in range(1, 5)]), FakeGPU(processes=[FakeProcess(9, 9 * GiB)])]
    sampler = make_sampler(FakeNVML(gpus), process_memory=True, max_process_series=3)
    sampler.sample()
    text = render(sampler.sample())
    kept = sorted(int(lbl["pid"]) for lbl, _ in samples(text)["nvidia_gpu_process_memory_used_bytes"])
    assert kept == [3, 4, 9]
    assert value(text, "nvidia_gpu_process_series_dropped_total") == 4  # 2 dropped on each of 2 passes


def test_process_name_reads_comm_and_falls_back_to_unknown():
    with open(f"/proc/{os.getpid()}/comm") as fh:
        assert process_name(os.getpid()) == fh.read().strip()
    assert process_name(2**22 + 12345) == "unknown"


def test_mig_devices_report_memory_with_parent_labels(make_sampler):
    gpu = FakeGPU(
        mig_enabled=True,
        mig_devices=[FakeMigDevice(0, "MIG-aaaa", 1, 0, memory_total=10 * GiB, memory_used=GiB), FakeMigDevice(3, "MIG-bbbb", 2, 0, memory_total=20 * GiB, memory_used=5 * GiB)],
    )
    gpu.unsupported.add("nvmlDeviceGetUtilizationRates")  # as on a real GPU in MIG mode
    fake = FakeNVML([gpu, FakeGPU()])
    text = render(make_sampler(fake).sample())
    used = {(lbl["gpu"], lbl["uuid"], lbl["mig_index"], lbl["mig_uuid"], lbl["gi"], lbl["ci"]): v for lbl, v in samples(text)["nvidia_gpu_mig_memory_used_bytes"]}
    assert used == {("0", UUID0, "0", "MIG-aaaa", "1", "0"): GiB, ("0", UUID0, "3", "MIG-bbbb", "2", "0"): 5 * GiB}
    assert value(text, "nvidia_gpu_mig_memory_total_bytes", mig_uuid="MIG-bbbb") == 20 * GiB
    assert value(text, "nvidia_gpu_up", gpu="0") == 1  # empty MIG slots (NOT_FOUND) are not errors
    assert value(text, "nvidia_gpu_mig_memory_used_bytes", gpu="1") is None
    assert promtool_check(text) == ""


def test_mig_disabled_makes_no_mig_series(make_sampler):
    fake = FakeNVML([FakeGPU(mig_enabled=False, mig_devices=[FakeMigDevice(0, "MIG-x", 1, 0)])])
    assert "nvidia_gpu_mig_memory_used_bytes" not in samples(render(make_sampler(fake).sample()))
    assert fake.calls["nvmlDeviceGetMigDeviceHandleByIndex"] == 0


def test_static_identity_is_read_once_per_nvml_session(make_sampler):
    fake = FakeNVML(2)
    sampler = make_sampler(fake)
    for _ in range(3):
        sampler.sample()
    assert fake.calls["nvmlDeviceGetName"] == 2
    assert fake.calls["nvmlDeviceGetMemoryInfo"] == 6


def test_nvml_unavailable_is_logged_once_then_counted(make_sampler, clock, errors, caplog):
    # A CPU host: no library. Every retry is counted; the warning is logged once, not every minute.
    fake = FakeNVML(1, library_present=False)
    sampler = make_sampler(fake, reinit_backoff_initial_seconds=1, reinit_backoff_max_seconds=4)
    with caplog.at_level("DEBUG", logger="exporter.nvml.sampler"):
        for _ in range(20):
            sampler.sample()
            clock.advance(4)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "NVML unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "counted in exporter_collector_errors_total" in warnings[0].getMessage()
    assert fake.calls["nvmlInit"] >= 10
    assert errors.count("nvmlInit") == fake.calls["nvmlInit"]
    # recovery, then a new outage: warned again
    fake.library_present = True
    sampler.sample()
    assert sampler.initialised
    fake.stop_driver()
    sampler.sample()
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "NVML unavailable" in r.getMessage()]
    assert len(warnings) == 2
