# dpu.offload: every entry point a person or CI uses. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# PAIRS=N (1-10) runs the lab and the playbooks on N HOST/DPU pairs at once;
# pair 1 is inventories/lab, larger fleets get a generated inventory.
PAIRS ?= 1
# LAB=vm runs the lab targets (demo, lab-up, lab-down, lab-image, lab-clean,
# teardown) on two QEMU guests instead of containers: inventories/vm, one pair.
LAB ?= container
ifeq ($(filter container vm,$(LAB)),)
$(error LAB is container (the default) or vm, not $(LAB))
endif
ifeq ($(LAB)-$(PAIRS),vm-1)
INVENTORY ?= inventories/vm
else ifeq ($(LAB),vm)
$(error the VM lab is one pair: PAIRS=$(PAIRS) needs LAB=container)
endif
INVENTORY ?= $(if $(filter 1,$(PAIRS)),inventories/lab,.lab/pairs-$(PAIRS))
VMLAB := $(BIN)/python lab/vm/vmlab.py
# Mitogen's strategy, linked here by `make venv`: the VM lab's playbooks run
# with it (a module costs seconds of emulated CPU per task otherwise; see
# lab/vm/README.md). molecule/qtfs sets the same two variables.
MITOGEN_STRATEGY := $(CURDIR)/.build/mitogen-strategy
ifeq ($(LAB),vm)
export ANSIBLE_STRATEGY_PLUGINS := $(MITOGEN_STRATEGY)
export ANSIBLE_STRATEGY := mitogen_linear
endif
# ansible-test wants the tree at .../ansible_collections/dpu/offload, outside
# any other git checkout.
ATEST_ROOT ?= $(or $(TMPDIR),/tmp)/dpu-offload-ansible-test
ATEST_DIR := $(ATEST_ROOT)/ansible_collections/dpu/offload
ATEST_PY ?= 3.11
# pyenv's shims answer for versions that are not selected (exit 127), which
# ansible-test takes for installed interpreters: put the real ones first.
empty :=
space := $(empty) $(empty)
PYENV_BINS := $(subst $(space),:,$(wildcard $(HOME)/.pyenv/versions/3.*/bin))
ATEST_PATH := $(BIN)$(if $(PYENV_BINS),:$(PYENV_BINS)):$(PATH)

.PHONY: help venv vm-smoke molecule-qtfs demo teardown inventory bench-playbook ee test unit lint sanity units molecule changelog-lint importer \
	build install-check k8s-build k8s-up kubectl critest k8s-down lab-up lab-down lab-image lab-clean bench-rexec bench-mounts bench-engine bench-storage bench-quick chaos clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(VENV)/.stamp: requirements.txt tools/ansible-test-pip-seed.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	mkdir -p .build/collections/ansible_collections/dpu
	ln -sfn ../../../.. .build/collections/ansible_collections/dpu/offload
	ln -sfn "$$($(BIN)/python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy" $(MITOGEN_STRATEGY)
	tools/ansible-test-pip-seed.sh $(BIN)/python
	touch $@

venv: $(VENV)/.stamp ## virtualenv with the pinned dependencies

demo: venv lab-up ## bring the lab up, deploy the offload, verify it and show the report (PAIRS=N, or LAB=vm)
	ansible-playbook playbooks/offload.yml -i $(INVENTORY)
	ansible-playbook playbooks/verify.yml -i $(INVENTORY)

teardown: venv ## undo the offload on the lab (the containers stay)
	ansible-playbook playbooks/teardown.yml -i $(INVENTORY)

.lab/pairs-%/hosts.yml: tools/lab_inventory.py inventories/lab/hosts.yml lab/settings.yml
	$(BIN)/python tools/lab_inventory.py $* .lab/pairs-$*

inventory: $(if $(filter 1,$(PAIRS)),,.lab/pairs-$(PAIRS)/hosts.yml)

vm-smoke: venv ## boot the VM lab (LAB=vm), ping both guests with Ansible and over the private link, take it down (KEEP=1 keeps it)
	lab/vm/smoke.sh

test: venv unit lint changelog-lint sanity units importer install-check bench-quick molecule ## everything CI checks

unit: venv ## plain pytest suites (rexec, the stock mode's shim wrapper, lab tooling, qtfs rendering)
	pytest -q tests/rexec tests/stock tests/network tests/lab tests/render

lint: venv ## ansible-lint, production profile
	ansible-lint --profile production

changelog-lint: venv
	antsibull-changelog lint

$(ATEST_DIR): FORCE
	rm -rf $(ATEST_DIR) && mkdir -p $(ATEST_DIR)
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -C $(ATEST_DIR) -xf -
FORCE:

sanity: venv $(ATEST_DIR) ## ansible-test sanity, empty ignore files
	cd $(ATEST_DIR) && PATH=$(ATEST_PATH) ansible-test sanity --color no --requirements

units: venv $(ATEST_DIR) ## ansible-test units for modules and module_utils
	cd $(ATEST_DIR) && ansible-test units --color no --requirements --python $(ATEST_PY)

build: venv ## collection tarball in .build/
	ansible-galaxy collection build --force --output-path .build/dist .

importer: build ## galaxy-importer on the built tarball
	cd .build/dist && python -m galaxy_importer.main dpu-offload-*.tar.gz

COLLECTION_VERSION = $(shell sed -n 's/^version: *//p' galaxy.yml)
install-check: build ## install the tarball offline beside ansible-core alone + its declared dependencies; syntax-check the playbooks, rexec in check mode on localhost
	python tools/install_check.py .build/dist/dpu-offload-$(COLLECTION_VERSION).tar.gz

# molecule/qtfs boots the VM lab and builds the real qtfs in it from a
# source archive: QTFS_SOURCE, else upstream's v1.3 tarball beside the
# checkout. It takes about 55 minutes under emulation, which on a 2-core
# machine takes `make test` past CI's hour, so it runs when asked for
# (QTFS=1, or make molecule-qtfs); otherwise make molecule says it skipped it.
QTFS ?= 0
QTFS_SOURCE ?= $(wildcard $(CURDIR)/../shared/vendor/dpu-utilities-1.3.tar.gz)
export QTFS_SOURCE
MOLECULE_SCENARIOS ?= default patched k8s $(if $(filter 1,$(QTFS)),$(if $(QTFS_SOURCE),qtfs))
QTFS_WHY_NOT := $(if $(QTFS_SOURCE),not asked for (about 55 minutes under emulation). Run it with make test QTFS=1 or make molecule-qtfs,no qtfs source archive. Point QTFS_SOURCE at one (make molecule-qtfs QTFS_SOURCE=/path/to/dpu-utilities-1.3.tar.gz))
QTFS_SKIPPED := $(if $(filter qtfs,$(MOLECULE_SCENARIOS)),,molecule: SKIPPED the qtfs scenario (the real qtfs.ko in the VM lab): $(QTFS_WHY_NOT).)

# The whole run is kept in .build/molecule.log; on a failure its failing
# tasks and tests are printed last, where CI's tail shows them.
molecule: venv lab-image $(if $(filter k8s,$(MOLECULE_SCENARIOS)),k8s-build) ## molecule test of MOLECULE_SCENARIOS (default, patched, k8s; QTFS=1 adds qtfs)
	mkdir -p .build
	$(if $(QTFS_SKIPPED),@echo '$(QTFS_SKIPPED)')
	for scenario in $(MOLECULE_SCENARIOS); do molecule test -s $$scenario || exit $$?; done 2>&1 | tee .build/molecule.log \
		|| { status=$$?; python tools/failure_digest.py .build/molecule.log; exit $$status; }
	$(if $(QTFS_SKIPPED),@echo '$(QTFS_SKIPPED)')

molecule-qtfs: venv ## molecule/qtfs alone: the real qtfs.ko in the VM lab (QTFS_SOURCE or the vendored tarball; about 55 minutes)
	mkdir -p .build
	molecule test -s qtfs 2>&1 | tee .build/molecule-qtfs.log \
		|| { status=$$?; python tools/failure_digest.py .build/molecule-qtfs.log; exit $$status; }
ifeq ($(LAB),vm)
lab-image: venv
	$(VMLAB) image

lab-up: venv
	$(VMLAB) up -i $(INVENTORY)

lab-down: venv
	$(VMLAB) down

lab-clean: venv
	$(VMLAB) clean
else
lab-image: venv ## Docker engine running and the lab base image built (once); LAB=vm: the guest image
	lab/lab.sh image

lab-up: venv inventory ## create/start the lab containers from the inventory (PAIRS=N); LAB=vm: boot the two QEMU guests
	ansible-playbook lab/lab.yml -i $(INVENTORY)

lab-down: venv inventory ## remove the lab containers and network (only the project's); LAB=vm: stop the guests by pid
	ansible-playbook lab/lab.yml -i $(INVENTORY) -e lab_state=absent

lab-clean: lab-down ## lab-down, then remove the lab base image too (LAB=vm: the guest image and key)
	lab/lab.sh rmi
endif

k8s-build: ## kubelet, kube-apiserver, kube-controller-manager, kubectl, etcd, crictl, critest from their pinned Go modules, into .build/k8s (cached by their pins)
	lab/k8s/build.sh

KUBECTL := .build/k8s/kubectl --kubeconfig .build/k8s-lab/admin.kubeconfig
k8s-up: venv k8s-build lab-up ## the lab with a control plane and kubelet on the DPU (kubectl: make kubectl ARGS='get nodes')
	ansible-playbook lab/k8s/cluster.yml -i $(INVENTORY)
	ansible-playbook playbooks/offload.yml -i $(INVENTORY) -e lab_kubelet=true
	$(KUBECTL) get nodes -o wide

kubectl: ## kubectl on the lab's cluster (make kubectl ARGS='get pods -A')
	@$(KUBECTL) $(ARGS)

critest: venv k8s-build ## critest on the deployed lab's DPU, offloaded against local, all specs (about 10 minutes); its table
	ansible-playbook lab/k8s/critest.yml -i $(INVENTORY)

k8s-down: venv ## undo make k8s-up: the offload, kubelet's lab files and cgroups (make lab-down removes the containers)
	ansible-playbook playbooks/teardown.yml -i $(INVENTORY)
	ansible-playbook lab/k8s/cluster-down.yml -i $(INVENTORY)

bench-rexec: venv ## rexec against OpenSSH on loopback
	python bench/bench_rexec.py

bench-mounts: venv ## idempotent qtfs_mount pass over 40 mounts
	python bench/bench_mounts.py

bench-playbook: venv lab-image ## converge, idempotent re-run and teardown, 1 pair vs 4
	bench/bench_playbook.sh 1 4

bench-engine: venv ## docker run/exec and ctr run on a deployed lab pair, offloaded against a local runtime (make demo first)
	python bench/bench_engine.py

bench-storage: venv ## a workload's file I/O offloaded / local runtime / HOST's disk, and a 100 MiB image's start-up (make demo first)
	python bench/bench_storage.py

# The faults of molecule/default/tests/test_faults.py on a deployed lab (pair 1), bounded in time; the test
# image comes from the scenario's side_effect.yml. Each fault cleans up what it started.
chaos: venv ## run the faults on a deployed lab (make demo first) and print fault, containers kept, recovery, lines dropped
	mkdir -p .build && rm -f .build/chaos.jsonl
	cd molecule/default && ansible-playbook -i $(CURDIR)/inventories/lab side_effect.yml > $(CURDIR)/.build/chaos-prepare.log
	status=0; LAB_INVENTORY=inventories/lab CHAOS_REPORT=$(CURDIR)/.build/chaos.jsonl timeout 1200 \
		pytest -q -p no:cacheprovider molecule/default/tests/test_faults.py || status=$$?; \
	python tools/chaos_table.py .build/chaos.jsonl; exit $$status

bench-quick: venv ## bench-rexec and bench-mounts in quick mode (a few runs, small sizes; figures not enforced)
	python bench/bench_rexec.py --quick
	python bench/bench_mounts.py --quick

ee: build ## execution-environment build context for AWX/Automation Controller (.build/ee)
	ansible-builder create -f execution-environment.yml -c .build/ee

clean: ## remove the virtualenv and build output (not the lab)
	rm -rf $(VENV) .build $(ATEST_ROOT)

print-inventory:
	@echo $(INVENTORY)
