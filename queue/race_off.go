// SPDX-License-Identifier: Apache-2.0

//go:build !race

package queue

type raceToken struct{}

func (*raceToken) sync() {}

const raceEnabled = false
