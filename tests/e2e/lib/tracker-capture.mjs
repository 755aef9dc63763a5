// The calls Tracker Capture makes (docs/dhis2-clients.md A1), run inside a page so they go
// through the service worker exactly as the app's would, and helpers to ask dhis2-sim what
// reached it.

export const P = 'PrMchProg01';
export const ANC = 'PsAncVisit1';
export const TET = 'TetPerson01';
export const A = { nid: 'AtNationId1', first: 'AtFirstNam1', last: 'AtLastName1', dob: 'AtBirthDat1' };
export const DE = { weight: 'DeWeightKg1', weeks: 'DeGestWeek1', bp: 'DeBpSystol1' };

/** Registration (3 calls reading `reference`), then an ANC visit value by value, completed. */
export async function registerAndVisit(page, { nid, first, last, ou }) {
  return page.evaluate(async ({ nid, first, last, ou, P, ANC, TET, A, DE }) => {
    const send = async (method, path, body) => {
      const r = await fetch(path, {
        method,
        headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'XMLHttpRequest' },
        body: JSON.stringify(body),
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    const today = new Date().toISOString().slice(0, 10);
    const tei = (await send('POST', '/api/trackedEntityInstances', {
      trackedEntityType: TET, orgUnit: ou,
      attributes: [{ attribute: A.nid, value: nid }, { attribute: A.first, value: first }, { attribute: A.last, value: last }, { attribute: A.dob, value: '1996-04-12' }],
    })).response.importSummaries[0].reference;
    const enrollment = (await send('POST', '/api/enrollments', {
      trackedEntityInstance: tei, program: P, status: 'ACTIVE', orgUnit: ou, enrollmentDate: today, incidentDate: today,
    })).response.importSummaries[0].reference;
    const event = (await send('POST', '/api/events.json', {
      events: [{ trackedEntityInstance: tei, program: P, programStage: ANC, enrollment, orgUnit: ou, status: 'ACTIVE', eventDate: today, dataValues: [], notes: [] }],
    })).response.importSummaries[0].reference;
    const values = [[DE.weight, '64.5'], [DE.weeks, '12'], [DE.bp, '118']];
    for (const [de, value] of values) {
      await send('PUT', `/api/events/${event}/${de}`, {
        event, orgUnit: ou, program: P, programStage: ANC, status: 'ACTIVE', trackedEntityInstance: tei,
        dataValues: [{ dataElement: de, value, providedElsewhere: false }],
      });
    }
    await send('PUT', `/api/events/${event}`, {
      event, orgUnit: ou, program: P, programStage: ANC, status: 'COMPLETED', trackedEntityInstance: tei, enrollment,
      eventDate: today, completedDate: today, dataValues: values.map(([dataElement, value]) => ({ dataElement, value })),
    });
    return { tei, enrollment, event };
  }, { nid, first, last, ou, P, ANC, TET, A, DE });
}

/** GET on the sim as admin (bypassing the browser). */
export async function simGet(sim, path, user = 'admin:district') {
  const r = await fetch(sim.url + path, {
    headers: { Authorization: `Basic ${Buffer.from(user).toString('base64')}`, 'X-Requested-With': 'XMLHttpRequest' },
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

export async function simFaults(sim, rules, seed = 7) {
  const r = await fetch(`${sim.url}/__sim/faults`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ seed, rules }),
  });
  if (!r.ok) throw new Error(`faults: ${r.status} ${await r.text()}`);
}

/** Requests that reached the sim (with their JSON bodies for writes). */
export async function simRequests(sim, query = '') {
  return (await fetch(`${sim.url}/__sim/requests${query}`)).json();
}

/** How many write requests that reached the sim carried `uid` as a record of their body. */
export function createsOf(log, uid) {
  return log.filter((r) => r.method === 'POST' && r.status !== null && JSON.stringify(r.body ?? '').includes(`"${uid}"`)).length;
}

/**
 * The district changes a visit straight on the server (`/api/tracker` UPDATE as admin): the
 * header as given (minus what the server keeps itself) with exactly these data values.
 */
export async function districtSets(sim, header, values) {
  const { dataValues, notes, relationships, createdAt, updatedAt, createdBy, updatedBy, storedBy, ...event } = header;
  const r = await fetch(`${sim.url}/api/tracker?async=false&importStrategy=UPDATE`, {
    method: 'POST',
    headers: { Authorization: `Basic ${Buffer.from('admin:district').toString('base64')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ events: [{ ...event, dataValues: Object.entries(values).map(([dataElement, value]) => ({ dataElement, value })) }] }),
  });
  if (r.status !== 200) throw new Error(`district update: ${r.status} ${await r.text()}`);
}

/** A visit of the seed, opened (ACTIVE) on the server so the apps may edit it: its header. */
export async function anOpenVisit(sim, ou, values = {}) {
  const list = await simGet(sim, `/api/tracker/events?orgUnit=${ou}&program=${P}&programStage=${ANC}&fields=*&pageSize=1`);
  const found = (list.body.events ?? list.body.instances ?? [])[0];
  if (!found) throw new Error(`the seed has no visit: ${JSON.stringify(list.body)}`);
  const header = { ...found, status: 'ACTIVE' };
  delete header.completedAt;
  delete header.completedBy;
  await districtSets(sim, header, values);
  return header;
}
