# A golden node root filesystem built with Packer's docker builder: the
# same provisioners as the cloud template (../node.pkr.hcl), run in a
# container of a local base image, and the container's filesystem exported
# as a tar that boots under systemd (in systemd-nspawn, or written to a
# disk). See README.md in this directory.
#
#   docker import debian-root.tar nodeprov-base:bookworm
#   packer build -var spec=../../k8s-worker.yaml .

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    docker = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/docker"
    }
  }
}

variable "base_image" {
  type        = string
  default     = "nodeprov-base:bookworm"
  description = "A local image of a bootable root with systemd (docker import of a debootstrapped Debian root). It is used as it is, never pulled."
}

variable "nodeprov_binary" {
  type        = string
  default     = "../../../bin/nodeprov"
  description = "nodeprov for the image's architecture (make build). It is installed into the image and runs the first boot."
}

variable "spec" {
  type        = string
  default     = "../../k8s-worker.yaml"
  description = "The node spec. Its URLs and mirrors say where the build downloads from."
}

variable "network" {
  type        = string
  default     = "host"
  description = "docker run --network of the build container. host: the build reaches a mirror on the Docker host's loopback, as the spec names it."
}

variable "output" {
  type        = string
  default     = "node-rootfs.tar"
  description = "The tar of the image's root filesystem."
}

variable "docker_path" {
  type    = string
  default = "docker"
}

variable "report_dir" {
  type        = string
  default     = "reports"
  description = "Local directory the JSON reports of apply and seal are copied to."
}

locals {
  work = "/tmp/nodeprov-build"
}

source "docker" "node" {
  image       = var.base_image
  pull        = false
  docker_path = var.docker_path
  export_path = var.output
  run_command = ["-d", "-i", "-t", "--network", var.network, "--entrypoint=/bin/sh", "--", "{{.Image}}"]
}

build {
  sources = ["source.docker.node"]

  provisioner "shell" {
    inline = ["install -d -m 0700 ${local.work}"]
  }
  provisioner "file" {
    source      = var.nodeprov_binary
    destination = "${local.work}/nodeprov"
  }
  provisioner "file" {
    source      = var.spec
    destination = "${local.work}/node.yaml"
  }

  # The image build, on the container's own root: apply the spec offline
  # (--image: nothing live, units enabled by links, nodeprov, the spec and
  # the first-boot unit installed), then seal it so that every copy gets
  # its own machine-id on its first boot.
  provisioner "shell" {
    inline_shebang = "/bin/sh -eu"
    inline = [
      "chmod 0755 ${local.work}/nodeprov",
      "${local.work}/nodeprov version",
      "${local.work}/nodeprov apply --image -o json ${local.work}/node.yaml > ${local.work}/apply-report.json",
      "${local.work}/nodeprov seal --clean-cache -o json > ${local.work}/seal-report.json",
    ]
  }

  provisioner "file" {
    direction   = "download"
    source      = "${local.work}/apply-report.json"
    destination = "${var.report_dir}/apply-report.json"
  }
  provisioner "file" {
    direction   = "download"
    source      = "${local.work}/seal-report.json"
    destination = "${var.report_dir}/seal-report.json"
  }

  provisioner "shell" {
    inline_shebang = "/bin/sh -eu"
    inline = [
      "rm -rf ${local.work}",
      "if command -v cloud-init >/dev/null; then cloud-init clean --logs; fi",
    ]
  }

  error-cleanup-provisioner "file" {
    direction   = "download"
    source      = "${local.work}/apply-report.json"
    destination = "${var.report_dir}/apply-report.json"
  }

  # Docker overmounts /etc/hosts, /etc/hostname and /etc/resolv.conf in a
  # running container, so the export holds its empty placeholders (and its
  # /.dockerenv marker and the builder's /packer-files mount point), not
  # the image's files. An empty /etc/hosts would fail the first boot
  # (nodeprov's required preflight probe network.localhost). Drop them,
  # and give the image a localhost-only /etc/hosts: the hostname and
  # resolv.conf come from the machine that boots it (cloud-init, DHCP).
  post-processor "shell-local" {
    inline_shebang = "/bin/sh -eu"
    inline = [
      "tar --delete -f ${var.output} .dockerenv packer-files etc/hosts etc/hostname etc/resolv.conf",
      "tar --append -f ${var.output} --owner=0 --group=0 --numeric-owner --mode=0644 -C ${path.root}/rootfs etc/hosts",
    ]
  }
}
