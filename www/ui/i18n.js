// The one catalogue of texts, English and Arabic, shared by the Tracker Capture loader
// (tracker-capture/loader.js), the demo (demo/) and the shared screens (ui/): every message they
// show and a text for every error code the library can give (TrackerOfflineErrorCode in
// tracker-offline.d.ts, plus OFFLINE_NOT_AVAILABLE of the service worker's error bodies). The npm
// package ships ui/ with the loader. tests/package/i18n.test.mjs fails when a key or an
// error code lacks a text in either language, or when a text is empty.
//
// Also: which language to show (`pickLanguage`), its direction, and numbers and dates written as
// DHIS2 writes them. No browser global is touched at the top level (node imports it in tests).

/** The languages of the catalogue; the first is the fallback. */
export const LANGUAGES = ['en', 'ar'];

export const MESSAGES = {
  en: {
    // The demo's texts.
    skip: 'Skip to content', title: 'MCH clinic', starting: 'Starting…', loading: 'Loading…',
    online: 'Online', offline: 'Offline', pending: 'Pending', failed: 'Failed', sync: 'Send now',
    download: 'Download clinic', serverDown: 'Server down (demo)', switchUser: 'Switch user', cancel: 'Cancel',
    loginTitle: 'Log in', username: 'Username', password: 'Password', loginBtn: 'Log in',
    loginHelp: 'When the server cannot be reached, staff who logged in online on this device before can still log in.',
    loggedInOnline: 'Logged in online', loggedInOffline: 'Logged in offline (server unreachable)',
    usersHere: 'Staff registered on this device', none: 'none yet',
    list: 'Women in care', search: 'Search by name or national ID', searchBtn: 'Search', clear: 'Show all',
    register: 'Register a woman', noResults: 'No woman found.', open: 'Open',
    nid: 'National ID', name: 'Name', dob: 'Date of birth', regNo: 'Registration no.',
    regTitle: 'Register and enroll a woman', enrollDate: 'Date of registration', lmp: 'Last menstrual period',
    regNoHelpOnline: 'Given by the server.', regNoHelpReserved: 'Reserved from the server earlier, for offline use.', regNoHelpOffline: 'Offline: the server will need to give one later.',
    required: 'Required', dateFuture: 'Cannot be in the future', badDate: 'Not a valid date',
    nidTaken: 'This national ID is already registered', saveReg: 'Register and enroll',
    back: 'Back to list', dashboard: 'Dashboard', enrollment: 'Enrollment', noEvents: 'No events yet.',
    newEvent: 'New', visitDate: 'Date', status: 'Status', by: 'Recorded by', values: 'Values',
    completeBtn: 'Complete visit', completed: 'Completed', active: 'Open', schedule: 'Scheduled',
    saving: 'Saving…', saved: 'Saved', savedLocal: 'Saved on this device, waiting to send',
    saveFailed: 'Not saved', notNumber: 'Enter a number', notInteger: 'Enter a whole number',
    notPositive: 'Must be more than 0', notZeroPos: 'Must be 0 or more', yes: 'Yes', no: 'No',
    backToWoman: 'Back to her dashboard', eventReadOnly: 'This visit is completed and can no longer be changed here.',
    failuresTitle: 'Refused by the server', noFailures: 'Nothing was refused.', reasons: 'Server said',
    retry: 'Retry', discard: 'Discard', discardTitle: 'Discard this change for good?',
    discardText: 'It will not be sent to the server and cannot be recovered.', author: 'Made by',
    deviceUsers: 'Device users', removeUserTitle: 'Remove a user from this device',
    removeUserHelp: 'For staff who left the clinic, or whose password may be known to others. Her offline login on this device ends and the clinic data is locked with a new key that she never had; her colleagues keep their access (their next login opens the new key). Her unsent work stays and is sent under her name. Also remove her on the DHIS2 server.',
    removeUserBtn: 'Remove from this device', removeUserConfirm: 'Remove {username} from this device?',
    removeUserConfirmText: 'She will need an online login and a colleague (or the server escrow) to use this device again.',
    removedUser: '{username} was removed from this device; colleagues who keep their access: {kept}.',
    removedUserRejoin: '{count} users registered before this version must log in online once again.',
    removeUnknown: 'Nobody with this username has logged in on this device.', removeSelf: 'You cannot remove yourself: a colleague logs in to remove you.',
    conflictsTitle: 'Changed here and on the server', conflictText: 'Someone changed this on the server while this device was offline. Your value was sent; theirs is kept here.',
    heldText: 'Someone changed this on the server while this device was offline. Your value was not sent: choose which one to keep.',
    serverValue: 'On the server it was', deviceValue: 'Sent from this device', deviceHeld: 'On this device (not sent)', baseValue: 'Before both changes',
    keepDevice: 'Keep this device’s value', keepServer: 'Put the server’s value back', emptyValue: '(empty)',
    windowText: 'Two windows of this device changed this before it was sent. The later value is the one in use; the earlier one is kept here.',
    windowValue: 'Saved in the other window', laterValue: 'Saved last (in use)', keepLater: 'Keep the later value', keepEarlier: 'Put the other window’s value back',
    warningsTitle: 'Accepted, with remarks from the server', dismiss: 'Dismiss', field: 'Field',
    downloading: 'Downloading the clinic', sending: 'Sending saved work', lastDownload: 'Clinic copy from',
    neverDownloaded: 'No clinic copy on this device yet', sessionEnded: 'The server asks for a new login: use “Switch user” and log in again.',
    notAvailableOffline: 'Not available offline.', metadataMissing: 'The program settings are not on this device: log in online once.',
    leaveDraft: 'The unsaved registration form will be cleared.',
    shiftHelp: 'Shift change: the next user logs in here. {name} stays logged in until then (a first login on this device receives the clinic data from this session).',
    logoutBtn: 'Log out', switchTitle: 'Switch user',
    stillPending: 'saved changes are waiting to be sent; they stay on this device and are sent by whoever logs in next while online.',
    sentOk: 'All saved work was sent.', sentSome: 'Sent {sent}, refused {failed}, still waiting {remaining}.',
    serverUnreachable: 'The server cannot be reached; the work stays on this device.',
    serverBusy: 'The server is busy; this device waits ({seconds} s or more) and sends the work later by itself.',
    passwordRefused: 'The server refused your saved password: nothing is sent until you log in online again (“Switch user”).',
    downOn: 'Demo: the server now drops every /api request.', downOff: 'Demo: the server answers again (the app notices within about 15 s).',
    outageHelp: 'To simulate an outage: tick “Server down (demo)” (when the demo runs with --faults), or stop the server.',
    chgRegister: 'Registration of a woman', chgProfile: 'Change to a woman\'s details', chgEnroll: 'Enrollment in the program',
    chgWoman: 'A woman\'s record (registration or details)',
    chgNewVisit: 'New visit', chgValue: 'A visit value', chgVisit: 'Visit (completed or changed)',
    created: 'Registered', ou: 'Clinic', errorCode: 'code',
    // The language switch shows the other language's name in that language.
    languageName: 'English',
    // The Tracker Capture loader's texts (with the demo's above where they are the same).
    loggingIn: 'Logging in…', logoutNoSuccessor: 'Log out without a successor', locked: 'Locked',
    pendingCount: '{count} waiting to be sent', allSent: 'All sent', refusedCount: '{count} refused',
    bothSidesCount: '{count} changed on both sides', copyingClinic: 'Copying clinic data {done}/{total}',
    fieldOfRecord: '{field} of {record}', refusedNoReason: 'Refused by the server.', close: 'Close',
    listSeparator: ', ',
    startFailed: 'Offline support failed to start: {reason}',
    // The library's error codes.
    'error.BAD_CREDENTIALS': 'Wrong username or password.',
    'error.UNKNOWN_USER_OFFLINE': 'The server cannot be reached, and this user has not logged in on this device while online. Connect to the network for the first login.',
    'error.LOCKED_OUT': 'Too many wrong passwords. Try again in {seconds} seconds.',
    'error.CREDENTIAL_EXPIRED': 'This device has been offline too long for this user. Connect to the network to log in.',
    'error.CREDENTIAL_REVOKED': 'The server no longer accepts this password. Connect to the network and log in with your current password.',
    'error.SERVER_UNREACHABLE': 'The server cannot be reached.',
    'error.AUTH_REQUIRED': 'The server asks for a new login: log in again while connected to the network.',
    'error.VAULT_LOCKED': 'Nobody is logged in on this device: log in first.',
    'error.HANDOVER_REQUIRED': 'A new user on this device logs in for the first time while a colleague is still logged in (or while the server can be reached).',
    'error.OUTSIDE_CLINIC': 'This user is not assigned to the clinic whose data is on this device.',
    'error.STORAGE_FULL': 'The device storage is full. Free some space, then try again.',
    'error.STORAGE_CORRUPT': 'The local data of this device cannot be read.',
    'error.STORAGE_ERROR': 'The device storage failed. Try again; if it keeps failing, tell the district.',
    'error.STALE_WRITE': 'Another window changed the same data at the same moment; nothing was saved. Try again.',
    'error.BAD_INPUT': 'This cannot be accepted: check what was entered.',
    'error.UNSENT_WORK': 'She has unsent changes only she can send (her own settings): she logs in once to send them, or they are discarded under "Refused by the server", before she is removed.',
    'error.CONFLICT': 'The server’s rules do not allow this.',
    'error.ESCROW_UNSAFE': 'This server cannot keep the clinic’s key safely: a new user logs in while a colleague is still logged in.',
    'error.BAD_RESPONSE': 'The server gave an answer that cannot be understood.',
    'error.CRYPTO_ERROR': 'The encryption of this browser failed.',
    'error.SERVICE_WORKER_UNAVAILABLE': 'The offline part of the page is not running. Reload the page.',
    'error.SERVICE_WORKER_ERROR': 'The offline part of the page failed. Reload the page.',
    'error.NOT_ALLOWED': 'This window may not use the data kept on this device. Reload the page.',
    'error.OFFLINE_NOT_AVAILABLE': 'This is not on this device, and the server cannot be reached.',
  },
  ar: {
    skip: 'انتقل إلى المحتوى', title: 'عيادة صحة الأم والطفل', starting: 'جارٍ البدء…', loading: 'جارٍ التحميل…',
    online: 'متصل', offline: 'غير متصل', pending: 'بانتظار الإرسال', failed: 'مرفوض', sync: 'أرسل الآن',
    download: 'تنزيل بيانات العيادة', serverDown: 'الخادم متوقف (تجربة)', switchUser: 'تبديل المستخدم', cancel: 'إلغاء',
    loginTitle: 'تسجيل الدخول', username: 'اسم المستخدم', password: 'كلمة المرور', loginBtn: 'دخول',
    loginHelp: 'عند تعذر الوصول إلى الخادم يمكن لمن سجّل الدخول على هذا الجهاز من قبل أن يدخل دون اتصال.',
    loggedInOnline: 'دخول متصل', loggedInOffline: 'دخول دون اتصال (الخادم غير متاح)',
    usersHere: 'المستخدمون المسجلون على هذا الجهاز', none: 'لا أحد بعد',
    list: 'النساء قيد المتابعة', search: 'ابحث بالاسم أو رقم الهوية', searchBtn: 'بحث', clear: 'عرض الكل',
    register: 'تسجيل امرأة', noResults: 'لم يتم العثور على أحد.', open: 'فتح',
    nid: 'رقم الهوية', name: 'الاسم', dob: 'تاريخ الميلاد', regNo: 'رقم التسجيل',
    regTitle: 'تسجيل امرأة وإدراجها في البرنامج', enrollDate: 'تاريخ التسجيل', lmp: 'آخر دورة شهرية',
    regNoHelpOnline: 'يعطيه الخادم.', regNoHelpReserved: 'محجوز من الخادم مسبقاً للعمل دون اتصال.', regNoHelpOffline: 'دون اتصال: سيعطيه الخادم لاحقاً.',
    required: 'مطلوب', dateFuture: 'لا يمكن أن يكون في المستقبل', badDate: 'تاريخ غير صالح',
    nidTaken: 'رقم الهوية هذا مسجل من قبل', saveReg: 'تسجيل وإدراج',
    back: 'العودة إلى القائمة', dashboard: 'الملف', enrollment: 'الإدراج', noEvents: 'لا زيارات بعد.',
    newEvent: 'جديد', visitDate: 'التاريخ', status: 'الحالة', by: 'سجّلها', values: 'القيم',
    completeBtn: 'إنهاء الزيارة', completed: 'منتهية', active: 'مفتوحة', schedule: 'مجدولة',
    saving: 'جارٍ الحفظ…', saved: 'تم الحفظ', savedLocal: 'محفوظ على الجهاز بانتظار الإرسال',
    saveFailed: 'لم يُحفظ', notNumber: 'أدخل رقماً', notInteger: 'أدخل عدداً صحيحاً',
    notPositive: 'يجب أن يكون أكبر من 0', notZeroPos: 'يجب أن يكون 0 أو أكثر', yes: 'نعم', no: 'لا',
    backToWoman: 'العودة إلى ملفها', eventReadOnly: 'هذه الزيارة منتهية ولا يمكن تعديلها هنا.',
    failuresTitle: 'ما رفضه الخادم', noFailures: 'لم يُرفض شيء.', reasons: 'رد الخادم',
    retry: 'أعد المحاولة', discard: 'تجاهل', discardTitle: 'تجاهل هذا التغيير نهائياً؟',
    discardText: 'لن يُرسل إلى الخادم ولا يمكن استعادته.', author: 'بواسطة',
    deviceUsers: 'مستخدمو الجهاز', removeUserTitle: 'إزالة مستخدمة من هذا الجهاز',
    removeUserHelp: 'لمن تركت العيادة، أو من قد يعرف غيرها كلمة مرورها. ينتهي دخولها دون اتصال على هذا الجهاز وتُقفل بيانات العيادة بمفتاح جديد لم يكن لديها؛ وتبقى زميلاتها قادرات على الدخول (يفتح دخولهن التالي المفتاح الجديد). يبقى عملها غير المرسل ويُرسل باسمها. أزيليها أيضاً من خادم DHIS2.',
    removeUserBtn: 'إزالة من هذا الجهاز', removeUserConfirm: 'إزالة {username} من هذا الجهاز؟',
    removeUserConfirmText: 'ستحتاج إلى دخول عبر الإنترنت وإلى زميلة (أو إلى حفظ المفتاح على الخادم) لتستخدم هذا الجهاز مجدداً.',
    removedUser: 'أُزيلت {username} من هذا الجهاز؛ تحتفظ {kept} من الزميلات بإمكانية الدخول.',
    removedUserRejoin: 'على {count} من المستخدمين المسجلين قبل هذا الإصدار الدخول عبر الإنترنت مرة أخرى.',
    removeUnknown: 'لم يسجّل أحد بهذا الاسم دخوله على هذا الجهاز.', removeSelf: 'لا يمكنك إزالة نفسك: تسجّل زميلة دخولها لإزالتك.',
    conflictsTitle: 'تغيّر هنا وعلى الخادم', conflictText: 'غيّر أحدهم هذا على الخادم بينما كان الجهاز غير متصل. أُرسلت قيمتك، وقيمته محفوظة هنا.',
    heldText: 'غيّر أحدهم هذا على الخادم بينما كان الجهاز غير متصل. لم تُرسل قيمتك: اختر أيهما تُبقي.',
    serverValue: 'على الخادم كانت', deviceValue: 'أُرسلت من هذا الجهاز', deviceHeld: 'على هذا الجهاز (لم تُرسل)', baseValue: 'قبل التغييرين',
    keepDevice: 'أبقِ قيمة هذا الجهاز', keepServer: 'أعد قيمة الخادم', emptyValue: '(فارغ)',
    windowText: 'غيّرت نافذتان على هذا الجهاز هذا الحقل قبل إرساله. القيمة الأحدث هي المعتمدة، والأقدم محفوظة هنا.',
    windowValue: 'حُفظت في النافذة الأخرى', laterValue: 'حُفظت أخيراً (المعتمدة)', keepLater: 'أبقِ القيمة الأحدث', keepEarlier: 'أعد قيمة النافذة الأخرى',
    warningsTitle: 'قُبل مع ملاحظات من الخادم', dismiss: 'إخفاء', field: 'الحقل',
    downloading: 'تنزيل بيانات العيادة', sending: 'إرسال العمل المحفوظ', lastDownload: 'نسخة العيادة من',
    neverDownloaded: 'لا توجد نسخة من بيانات العيادة على هذا الجهاز', sessionEnded: 'الخادم يطلب تسجيل دخول جديد: استخدم «تبديل المستخدم».',
    notAvailableOffline: 'غير متاح دون اتصال.', metadataMissing: 'إعدادات البرنامج غير موجودة على هذا الجهاز: سجّل الدخول متصلاً مرة واحدة.',
    leaveDraft: 'سيُمسح نموذج التسجيل غير المحفوظ.',
    shiftHelp: 'تبديل المناوبة: يسجّل المستخدم التالي دخوله هنا. يبقى {name} مسجلاً حتى ذلك الحين.',
    logoutBtn: 'تسجيل الخروج', switchTitle: 'تبديل المستخدم',
    stillPending: 'تغييرات محفوظة بانتظار الإرسال؛ تبقى على الجهاز ويرسلها من يدخل بعدك متصلاً.',
    sentOk: 'أُرسل كل العمل المحفوظ.', sentSome: 'أُرسل {sent}، رُفض {failed}، بانتظار {remaining}.',
    serverUnreachable: 'لا يمكن الوصول إلى الخادم؛ يبقى العمل على هذا الجهاز.',
    serverBusy: 'الخادم مشغول؛ ينتظر هذا الجهاز ({seconds} ث أو أكثر) ثم يرسل العمل تلقائياً.',
    passwordRefused: 'رفض الخادم كلمة المرور المحفوظة: لن يُرسل شيء حتى تسجّلي الدخول عبر الإنترنت مجدداً («تبديل المستخدم»).',
    downOn: 'تجربة: الخادم يسقط كل طلبات ‎/api‎ الآن.', downOff: 'تجربة: الخادم يجيب من جديد (يلاحظ التطبيق ذلك خلال 15 ثانية تقريباً).',
    outageHelp: 'لمحاكاة انقطاع: فعّل «الخادم متوقف (تجربة)» (عند تشغيل العرض مع ‎--faults‎) أو أوقف الخادم.',
    chgRegister: 'تسجيل امرأة', chgProfile: 'تعديل بيانات امرأة', chgEnroll: 'الإدراج في البرنامج',
    chgWoman: 'سجلّ امرأة (تسجيل أو تعديل بيانات)',
    chgNewVisit: 'زيارة جديدة', chgValue: 'قيمة في زيارة', chgVisit: 'زيارة (إنهاء أو تعديل)',
    created: 'سُجّلت', ou: 'العيادة', errorCode: 'رمز',
    languageName: 'العربية',
    loggingIn: 'جارٍ تسجيل الدخول…', logoutNoSuccessor: 'تسجيل الخروج دون مستخدم تالٍ', locked: 'مقفل',
    pendingCount: '{count} بانتظار الإرسال', allSent: 'أُرسل الكل', refusedCount: '{count} مرفوض',
    bothSidesCount: '{count} تغيّر هنا وعلى الخادم', copyingClinic: 'نسخ بيانات العيادة {done}/{total}',
    fieldOfRecord: '{field} في {record}', refusedNoReason: 'رفضه الخادم.', close: 'إغلاق',
    listSeparator: '، ',
    startFailed: 'تعذّر بدء العمل دون اتصال: {reason}',
    'error.BAD_CREDENTIALS': 'اسم المستخدم أو كلمة المرور غير صحيحة.',
    'error.UNKNOWN_USER_OFFLINE': 'لا يمكن الوصول إلى الخادم، ولم يسجّل هذا المستخدم دخوله على هذا الجهاز وهو متصل من قبل. اتصل بالشبكة لتسجيل الدخول أول مرة.',
    'error.LOCKED_OUT': 'كلمات مرور خاطئة كثيرة. حاول مجدداً بعد {seconds} ثانية.',
    'error.CREDENTIAL_EXPIRED': 'بقي هذا الجهاز دون اتصال مدة طويلة بالنسبة لهذا المستخدم. اتصل بالشبكة لتسجيل الدخول.',
    'error.CREDENTIAL_REVOKED': 'لم يعد الخادم يقبل كلمة المرور هذه. اتصل بالشبكة وسجّل الدخول بكلمة المرور الحالية.',
    'error.SERVER_UNREACHABLE': 'لا يمكن الوصول إلى الخادم.',
    'error.AUTH_REQUIRED': 'يطلب الخادم تسجيل دخول جديد: سجّل الدخول مجدداً وأنت متصل بالشبكة.',
    'error.VAULT_LOCKED': 'لا أحد مسجّل الدخول على هذا الجهاز: سجّل الدخول أولاً.',
    'error.HANDOVER_REQUIRED': 'يسجّل المستخدم الجديد دخوله أول مرة على هذا الجهاز بينما لا يزال زميل مسجّلاً الدخول (أو بينما يمكن الوصول إلى الخادم).',
    'error.OUTSIDE_CLINIC': 'هذا المستخدم غير معيّن في العيادة التي توجد بياناتها على هذا الجهاز.',
    'error.STORAGE_FULL': 'مساحة التخزين على الجهاز ممتلئة. أفرغ بعض المساحة ثم حاول مجدداً.',
    'error.STORAGE_CORRUPT': 'لا يمكن قراءة البيانات المحلية على هذا الجهاز.',
    'error.STORAGE_ERROR': 'تعطّل التخزين على الجهاز. حاول مجدداً، وإن تكرر ذلك فأبلغ المديرية.',
    'error.STALE_WRITE': 'غيّرت نافذة أخرى البيانات نفسها في اللحظة نفسها؛ لم يُحفظ شيء. حاول مجدداً.',
    'error.BAD_INPUT': 'لا يمكن قبول هذا: تحقّق مما أُدخل.',
    'error.UNSENT_WORK': 'لديها تغييرات غير مرسلة لا يرسلها غيرها (إعداداتها الخاصة): تسجّل دخولها مرة لإرسالها، أو تُتجاهل في «ما رفضه الخادم»، قبل إزالتها.',
    'error.CONFLICT': 'قواعد الخادم لا تسمح بهذا.',
    'error.ESCROW_UNSAFE': 'لا يستطيع هذا الخادم حفظ مفتاح العيادة بأمان: يسجّل المستخدم الجديد دخوله بينما لا يزال زميل مسجّلاً الدخول.',
    'error.BAD_RESPONSE': 'أعطى الخادم رداً لا يمكن فهمه.',
    'error.CRYPTO_ERROR': 'تعطّل التشفير في هذا المتصفح.',
    'error.SERVICE_WORKER_UNAVAILABLE': 'الجزء الذي يعمل دون اتصال في الصفحة لا يعمل. أعد تحميل الصفحة.',
    'error.SERVICE_WORKER_ERROR': 'تعطّل الجزء الذي يعمل دون اتصال في الصفحة. أعد تحميل الصفحة.',
    'error.NOT_ALLOWED': 'لا يُسمح لهذه النافذة باستخدام البيانات المحفوظة على هذا الجهاز. أعد تحميل الصفحة.',
    'error.OFFLINE_NOT_AVAILABLE': 'هذا غير موجود على هذا الجهاز، ولا يمكن الوصول إلى الخادم.',
  },
};

/**
 * The catalogue's language for a list of locales, most wanted first: the first that is Arabic
 * (`ar`, `ar-PS`, DHIS2's `ar_EG`) or English; English when none is. For the browser's
 * `navigator.languages` before a login, and for the user's DHIS2 `keyUiLocale` after it.
 */
export function pickLanguage(locales) {
  for (const locale of [locales ?? []].flat()) {
    const primary = String(locale).toLowerCase().split(/[-_]/)[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return LANGUAGES[0];
}

/** `rtl` for Arabic, `ltr` otherwise: for the `dir` attribute of what shows the texts. */
export function direction(lang) {
  return lang === 'ar' ? 'rtl' : 'ltr';
}

/**
 * The text of `key` in `lang` (English if that language lacks it, the key itself if both do),
 * with `{name}` replaced by `vars.name`; numbers among `vars` are written by `formatNumber`.
 */
export function t(lang, key, vars = {}) {
  const text = MESSAGES[lang]?.[key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => {
    const value = vars[name];
    return typeof value === 'number' ? formatNumber(lang, value) : String(value ?? '');
  });
}

/**
 * The text for an error of the library (by its `code`; `LOCKED_OUT` with the seconds to wait),
 * or the error's own message when its code has no text (a server's message, a browser error).
 */
export function explainError(lang, error) {
  const key = `error.${error?.code}`;
  if (!(key in MESSAGES.en)) return error?.message ?? String(error);
  return t(lang, key, { seconds: Math.ceil((error.retryAfterMs ?? 0) / 1000) });
}

/** A change of the outbox by its summary ("POST /api/enrollments") in words a nurse reads. */
export function describeChange(lang, summary = '', change = undefined) {
  if (change) {
    const { kind, action, dataElement } = change;
    if (kind === 'trackedEntity') return t(lang, action === 'create' ? 'chgRegister' : action === 'save' ? 'chgWoman' : 'chgProfile');
    if (kind === 'enrollment') return t(lang, 'chgEnroll');
    if (kind === 'event') return t(lang, action === 'create' ? 'chgNewVisit' : dataElement ? 'chgValue' : 'chgVisit');
    return summary;
  }
  // A warning kept before changes were described: read from `METHOD /path`.
  const [method, path = ''] = summary.split(' ');
  const parts = path.replace(/^.*\/api\//, '').replace(/\.json$/, '').split(/[/?]/);
  if (parts[0] === 'trackedEntityInstances') return method === 'POST' ? t(lang, 'chgRegister') : t(lang, 'chgProfile');
  if (parts[0] === 'enrollments') return t(lang, 'chgEnroll');
  if (parts[0] === 'events') return method === 'POST' ? t(lang, 'chgNewVisit') : parts.length > 2 ? t(lang, 'chgValue') : t(lang, 'chgVisit');
  return summary;
}

// Numerals and dates. DHIS2's Arabic UI writes digits as Western (Latin) digits: its dates follow
// the system's date format (yyyy-MM-dd by default) whatever the UI language, and Tracker Capture
// shows counts and values as they are stored. Intl's Arabic digits depend on the locale and the
// CLDR version (Chromium 156: `ar` writes 1,234 but `ar-PS` writes ١٬٢٣٤), so the Arabic locale of
// Intl here is `ar-u-nu-latn`: Arabic, always with Latin digits (and no grouping, as DHIS2 shows
// counts). A date-time is written yyyy-MM-dd HH:mm as DHIS2 writes it, from Intl's parts (the
// device's time zone, 24-hour clock), not in Intl's Arabic order (d‏/M‏/yyyy).
const INTL_LOCALES = { en: 'en-GB', ar: 'ar-u-nu-latn' };

/** The Intl locale of a catalogue language. */
export function intlLocale(lang) {
  return INTL_LOCALES[lang] ?? INTL_LOCALES.en;
}

/** A number as DHIS2 shows it in `lang` (Western digits). */
export function formatNumber(lang, value) {
  return new Intl.NumberFormat(intlLocale(lang), { useGrouping: false, maximumFractionDigits: 20 }).format(value);
}

/** A moment (milliseconds since 1970) as DHIS2 shows it: yyyy-MM-dd HH:mm, Western digits, local time. */
export function formatDateTime(lang, ms) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat(intlLocale(lang), {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}
